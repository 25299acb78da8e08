//! The context switch: save one side's registers, load the other's.
//!
//! A coroutine is a stack and the registers that say where on it the code
//! was. Switching is therefore: push the registers the System V x86-64 ABI
//! says a function must preserve (the *callee-saved* ones) onto the current
//! stack, store the stack pointer, load the other stack pointer, pop its
//! registers, and jump to wherever it left off. Caller-saved registers
//! need no saving: the switch is declared to clobber them, so the compiler
//! has already kept whatever it needs from them, as around any call. That
//! is the whole trick behind greenlet, Boost.Context and corosensei.
//!
//! What is saved, and why (SysV x86-64 ABI §3.2.1):
//!
//! | register | why it must survive |
//! |---|---|
//! | `rbx`, `r12`–`r15` | callee-saved general registers |
//! | `rbp` | callee-saved (frame pointer, when used) |
//! | `rsp` | the stack itself: stored in the `Context`, not pushed |
//! | MXCSR control bits | SSE rounding mode and exception masks are callee-saved |
//! | x87 control word | x87 rounding and precision are callee-saved |
//!
//! The SSE registers `xmm0`–`xmm15` are all caller-saved on SysV, and so
//! are MXCSR's *status* bits (the sticky exception flags): only the
//! control bits are put back.
//!
//! On aarch64 (AAPCS64 §6.1) the same idea saves more, because the ABI
//! gives callees more registers to keep:
//!
//! | register | why it must survive |
//! |---|---|
//! | `x19`–`x28` | callee-saved general registers |
//! | `x29` (`fp`) | the frame pointer: callee-saved |
//! | `x30` (`lr`) | the return address: declared clobbered, so the compiler keeps it |
//! | `sp` | the stack itself: stored in the `Context` |
//! | `d8`–`d15` | the low halves of `v8`–`v15` are callee-saved (the upper halves are not, so `v8`–`v15` are also declared clobbered) |
//! | FPCR | rounding mode and trap enables, like MXCSR's control bits |
//!
//! ## Asymmetric: resume and suspend
//!
//! The switch comes in two halves, like greenlet's parent link and
//! corosensei's `resume`/`suspend`: the scheduler *resumes* a coroutine,
//! and the coroutine *suspends* back to whoever resumed it. One word per
//! coroutine, its [`Context`], holds the other side's stack pointer: the
//! coroutine's while it is suspended, the resumer's while it runs.
//!
//! Why two halves, and why inline `asm!` rather than a function the
//! compiler calls: the CPU predicts where each `ret` goes from a small
//! stack of the addresses its `call`s pushed (the return stack buffer). A
//! switch that is a called function (`call switch` ... `ret` on the other
//! stack) always returns somewhere else than where it was called from, so
//! every switch paid a mispredicted return: 16 ns a switch here, most of
//! it that. Here `resume` enters the coroutine with a `call`, and
//! `suspend` comes back with the `ret` that matches it: both predicted,
//! as long as the coroutine suspends from the frame it was resumed in (a
//! tight loop). A coroutine resumed inside `yield_now` first returns out
//! of it, through return addresses the CPU never saw pushed; those
//! mispredict, as in every stackful runtime. Measured by `cargo bench
//! --bench coro`; the figures are in the `coro` chapter's *Costs*.
//!
//! One thing this cannot coexist with: a *shadow stack* (Intel CET, Linux
//! 6.6+), which keeps one hardware copy of the return addresses per
//! thread and kills the process when a `ret` disagrees with it, as the
//! first return out of a resumed coroutine does. Rust binaries are not
//! built with it, so glibc leaves it off; a runtime that wanted it would
//! give each coroutine a shadow stack of its own, as Boost.Context can.
//!
//! Why the MXCSR restore looks before it writes: `ldmxcsr` with a value
//! that differs from the current one drains the pipeline. Restoring the
//! whole register, status flags included, made the two sides write
//! different values on every switch as soon as one had done an inexact
//! float division (it sets a sticky flag): 80 ns a switch. Only the control
//! bits must survive, and they rarely differ, so the restore writes only
//! when they do.
//!
//! The x86-64 and aarch64 versions are written side by side below;
//! `Context::fresh` lays out each one's first frame.

use std::arch::{asm, global_asm};
use std::cell::Cell;

/// The entry function of a fresh coroutine: gets the data word laid in its
/// first frame. It must never return.
pub type Entry = unsafe extern "C" fn(data: usize) -> !;

/// One side of the switch: the stack pointer of whichever side is not
/// running — the coroutine's while it is suspended, its resumer's while it
/// runs. The registers are on the stack it points into.
#[derive(Debug)]
pub struct Context {
    sp: Cell<usize>,
}

impl Context {
    /// A context that, when resumed, runs `entry(data)` on the stack whose
    /// highest address is `stack_top`. The coroutine starts with the
    /// floating-point control state of whoever resumes it, as a called
    /// function would.
    ///
    /// # Safety
    ///
    /// `stack_top` must be the top of a writable stack at least 16 KiB
    /// deep (a signal delivered while the coroutine runs puts its frame
    /// there, several KiB with AVX-512 state), that stays allocated, and is
    /// used by nothing else, until the coroutine has suspended for the last
    /// time.
    pub unsafe fn fresh(stack_top: usize, entry: Entry, data: usize) -> Context {
        // SAFETY: the caller's promise is the one first_frame needs.
        let sp = unsafe { first_frame(stack_top & !15, entry, data) };
        Context { sp: Cell::new(sp) }
    }

    /// The stack pointer the coroutine suspended with, while it is
    /// suspended: everything it still needs lies at or above it (its
    /// saved registers at it, its frames above). Below it is dead: the
    /// switch's `asm!` blocks are not `nostack`, so the compiler keeps
    /// nothing in the red zone across them. While the coroutine runs, the
    /// word holds its resumer's stack pointer instead; for a fresh one, its
    /// first frame. [`super::trim`] reads it to give back the pages below.
    pub fn suspended_sp(&self) -> usize {
        self.sp.get()
    }

    /// Runs the coroutine of `context` until it suspends (or, if it is
    /// new, starts it).
    ///
    /// A raw pointer, not `&self`: a reference would stay alive across the
    /// switch, while the other side uses (and, once the coroutine is done,
    /// frees) the same memory.
    ///
    /// # Safety
    ///
    /// `context` must point to a live `Context` whose coroutine is
    /// suspended (or fresh), its stack still allocated; the `Context` must
    /// stay at this address until the coroutine suspends again. Nothing
    /// may unwind across a switch (the coroutine entry catches panics).
    #[inline(always)]
    pub unsafe fn resume(context: *const Context) {
        // SAFETY: upheld by the caller; the assembly saves every register
        // the ABI asks a callee to preserve and declares the rest clobbered.
        unsafe { resume(Cell::as_ptr(&(*context).sp)) }
    }

    /// From inside the running coroutine: goes back to whoever resumed it,
    /// and returns when it is resumed again (if ever: a finished coroutine
    /// suspends for good, and its `Context` may be freed meanwhile).
    ///
    /// # Safety
    ///
    /// Must be called on the coroutine's own stack, with a pointer to the
    /// `Context` it was resumed through.
    #[inline(always)]
    pub unsafe fn suspend(context: *const Context) {
        // SAFETY: as for `resume`.
        unsafe { suspend(Cell::as_ptr(&(*context).sp)) }
    }
}

// ------------------------------------------------------------- x86-64 ---
//
// The frame a suspended side leaves on its stack, from its saved rsp up:
//
//   [rsp]      where to continue (suspend's label 2, or the trampoline)
//   [rsp+8]    MXCSR (4 bytes) | x87 control word (2 bytes) | 2 spare
//   [rsp+16]   r15, r14, r13, r12, rbx, rbp
//
// The resumer's frame is the same without the first word: its `call`
// pushes its return address there instead.

/// Pushes the callee-saved registers and the two control words.
#[cfg(target_arch = "x86_64")]
macro_rules! save_callee_saved {
    () => {
        concat!(
            "push rbp\n",
            "push rbx\n",
            "push r12\n",
            "push r13\n",
            "push r14\n",
            "push r15\n",
            "sub rsp, 8\n",
            "stmxcsr [rsp]\n",
            "fnstcw [rsp + 4]\n",
        )
    };
}

/// Pops what `save_callee_saved` pushed. MXCSR gets back only its control
/// bits (0xFFC0: rounding, masks, flush-to-zero, denormals-are-zero) and
/// only when they differ; the status flags stay as they are.
#[cfg(target_arch = "x86_64")]
macro_rules! restore_callee_saved {
    () => {
        concat!(
            "mov ecx, [rsp]\n", // the saved MXCSR
            "stmxcsr [rsp]\n",  // the current one
            "mov eax, [rsp]\n",
            "xor eax, ecx\n",
            "and eax, 0xFFC0\n", // control bits that differ
            "jz 3f\n",
            "xor [rsp], eax\n", // current status, saved control
            "ldmxcsr [rsp]\n",
            "3:\n",
            "fldcw [rsp + 4]\n",
            "add rsp, 8\n",
            "pop r15\n",
            "pop r14\n",
            "pop r13\n",
            "pop r12\n",
            "pop rbx\n",
            "pop rbp\n",
        )
    };
}

/// The resumer's half: `rdi` = the coroutine's `Context`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn resume(context: *mut usize) {
    // SAFETY: the caller's promise (see `Context::resume`). The block
    // leaves with every callee-saved register as it found it and rsp back
    // where it was; everything else is declared clobbered.
    unsafe {
        asm!(
            save_callee_saved!(),
            "mov rax, [rdi]", // the coroutine's stack pointer
            // Push our return address (on our stack, and on the CPU's
            // return stack) and continue where the coroutine stopped: at
            // label 2 in `suspend`, or in the trampoline. Both see rax =
            // the coroutine's rsp and rdi = its Context.
            "call [rax]",
            // The coroutine `ret`ed here from `suspend`.
            restore_callee_saved!(),
            inout("rdi") context => _,
            clobber_abi("C"),
        )
    }
}

/// The coroutine's half: `rdi` = its `Context`, which holds the resumer's
/// stack pointer (pointing at the resumer's return address).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn suspend(context: *mut usize) {
    // SAFETY: as for `resume`.
    unsafe {
        asm!(
            save_callee_saved!(),
            "lea rax, [rip + 2f]", // where to continue when resumed
            "push rax",
            "mov rax, rsp",
            "mov rsp, [rdi]", // the resumer's stack...
            "mov [rdi], rax", // ...and ours, kept for the next resume
            "ret",            // to the resumer, as its `call` predicted
            // Resumed, by `call [rax]`: rsp = the resumer's stack, at its
            // return address; rax = our stack pointer.
            "2:",
            "mov [rdi], rsp",
            "lea rsp, [rax + 8]",
            restore_callee_saved!(),
            inout("rdi") context => _,
            clobber_abi("C"),
        )
    }
}

// The first instruction a fresh coroutine runs, entered by `resume`'s
// `call [rax]` with rsp = the resumer's stack, rdi = the Context, rax = the
// fresh frame (see `first_frame`).
#[cfg(target_arch = "x86_64")]
global_asm!(
    ".text",
    ".global iolab_coro_trampoline",
    ".type iolab_coro_trampoline, @function",
    "iolab_coro_trampoline:",
    // Unwinders (gdb, perf, a panic's backtrace) stop here: there is no
    // caller to find.
    ".cfi_startproc",
    ".cfi_undefined rip",
    "mov [rdi], rsp",      // the resumer's stack, for our first suspend
    "mov rdi, [rax + 16]", // data, the entry's argument
    "lea rsp, [rax + 24]", // our stack, 16-byte aligned, as at a `call`
    "xor ebp, ebp",        // a zero frame pointer ends backtraces too
    // A `call` would push an entry on the CPU's return stack that no
    // `ret` ever pops, and our first suspend's `ret` would be predicted
    // wrong. Push the return address by hand and jump instead.
    "lea rcx, [rip + 2f]",
    "push rcx",
    "jmp [rax + 8]", // entry(data)
    // The entry function never returns (it suspends for good).
    "2:",
    "ud2",
    ".cfi_endproc",
    ".size iolab_coro_trampoline, . - iolab_coro_trampoline",
);

extern "C" {
    fn iolab_coro_trampoline();
}

/// Lays out a fresh stack's first frame below `top` (16-byte aligned) and
/// returns the stack pointer to keep in the `Context`. From the top down,
/// 8 bytes each:
///
/// ```text
/// top-8, top-16   0 (padding: rsp = top-16 at the trampoline's call)
/// top-24          data
/// top-32          entry
/// top-40          iolab_coro_trampoline   <- Context
/// ```
///
/// # Safety
///
/// As for [`Context::fresh`].
#[cfg(target_arch = "x86_64")]
unsafe fn first_frame(top: usize, entry: Entry, data: usize) -> usize {
    let slots: [(usize, usize); 5] = [
        (8, 0),
        (16, 0),
        (24, data),
        (32, entry as *const () as usize),
        (40, iolab_coro_trampoline as *const () as usize),
    ];
    for (offset, value) in slots {
        // SAFETY: the caller gave us a writable stack below `top`.
        unsafe { ((top - offset) as *mut usize).write(value) };
    }
    top - 40
}

// ------------------------------------------------------------ aarch64 ---
//
// The same two halves. A suspended side's frame, from its saved sp up:
//
//   [sp]       where to continue (16 bytes, to keep sp aligned)
//   [sp+16]    x19-x28 at 0..80, x29 at 80, d8-d15 at 96..160, FPCR at 160
//
// The resumer's frame has its x30 (the return address its `blr` set) in
// the first slot instead. `bl`/`blr` and `ret` drive aarch64's return
// predictor exactly as `call` and `ret` do x86-64's.

/// Saves the callee-saved registers in a 176-byte frame.
#[cfg(target_arch = "aarch64")]
macro_rules! save_callee_saved {
    () => {
        concat!(
            "sub sp, sp, #176\n",
            "stp x19, x20, [sp, #0]\n",
            "stp x21, x22, [sp, #16]\n",
            "stp x23, x24, [sp, #32]\n",
            "stp x25, x26, [sp, #48]\n",
            "stp x27, x28, [sp, #64]\n",
            "str x29, [sp, #80]\n",
            "stp d8, d9, [sp, #96]\n",
            "stp d10, d11, [sp, #112]\n",
            "stp d12, d13, [sp, #128]\n",
            "stp d14, d15, [sp, #144]\n",
            "mrs x9, fpcr\n",
            "str x9, [sp, #160]\n",
        )
    };
}

/// Restores the frame; FPCR (control bits only: the flags live in FPSR)
/// is written only when it differs, as for MXCSR.
#[cfg(target_arch = "aarch64")]
macro_rules! restore_callee_saved {
    () => {
        concat!(
            "ldr x9, [sp, #160]\n",
            "mrs x11, fpcr\n",
            "cmp x9, x11\n",
            "b.eq 3f\n",
            "msr fpcr, x9\n",
            "3:\n",
            "ldp d14, d15, [sp, #144]\n",
            "ldp d12, d13, [sp, #128]\n",
            "ldp d10, d11, [sp, #112]\n",
            "ldp d8, d9, [sp, #96]\n",
            "ldr x29, [sp, #80]\n",
            "ldp x27, x28, [sp, #64]\n",
            "ldp x25, x26, [sp, #48]\n",
            "ldp x23, x24, [sp, #32]\n",
            "ldp x21, x22, [sp, #16]\n",
            "ldp x19, x20, [sp, #0]\n",
            "add sp, sp, #176\n",
        )
    };
}

/// The resumer's half: x0 = the coroutine's `Context`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn resume(context: *mut usize) {
    // SAFETY: as for the x86-64 version.
    unsafe {
        asm!(
            save_callee_saved!(),
            "ldr x10, [x0]",  // the coroutine's stack pointer
            "ldr x11, [x10]", // where it continues
            // x30 = our return point; continue at label 2 in `suspend`
            // or in the trampoline, with x10 = the coroutine's sp.
            "blr x11",
            restore_callee_saved!(),
            inout("x0") context => _,
            clobber_abi("C"),
        )
    }
}

/// The coroutine's half: x0 = its `Context`, which holds the resumer's sp
/// (pointing at the resumer's saved x30).
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn suspend(context: *mut usize) {
    // SAFETY: as for the x86-64 version.
    unsafe {
        asm!(
            save_callee_saved!(),
            "adr x9, 2f", // where to continue when resumed
            "str x9, [sp, #-16]!",
            "mov x9, sp",
            "ldr x10, [x0]", // the resumer's stack...
            "str x9, [x0]",  // ...and ours, kept for the next resume
            "ldr x30, [x10]",
            "add sp, x10, #16",
            "ret", // to the resumer, as its `blr` predicted
            // Resumed by `blr`: sp = the resumer's stack, x30 = its
            // return point, x10 = our sp. `bti c` marks this as a place an
            // indirect call may land, for binaries built with branch
            // protection; elsewhere it is a no-op.
            "2:",
            "hint #34", // bti c
            "str x30, [sp, #-16]!",
            "mov x9, sp",
            "str x9, [x0]",
            "add sp, x10, #16",
            restore_callee_saved!(),
            inout("x0") context => _,
            clobber_abi("C"),
        )
    }
}

// A fresh coroutine's first instruction, entered by `resume`'s `blr` with
// sp = the resumer's stack, x30 = its return point, x0 = the Context, x10
// = the fresh frame.
#[cfg(target_arch = "aarch64")]
global_asm!(
    ".text",
    ".global iolab_coro_trampoline",
    ".type iolab_coro_trampoline, %function",
    "iolab_coro_trampoline:",
    ".cfi_startproc",
    ".cfi_undefined x30",   // unwinders stop here
    "hint #34",             // bti c: `resume`'s `blr` lands here
    "str x30, [sp, #-16]!", // the resumer's return point, for our first suspend
    "mov x9, sp",
    "str x9, [x0]",
    "ldp x16, x0, [x10, #8]", // x16 = entry, x0 = data
    "add sp, x10, #32",       // our stack, 16-byte aligned
    "mov x29, #0",            // a zero frame pointer ends backtraces
    // Not `blr`, which would leave an entry on the return predictor that
    // no `ret` pops (see the x86-64 trampoline): set x30 by hand, jump.
    "adr x30, 2f",
    "br x16", // entry(data)
    // The entry function never returns.
    "2:",
    "brk #1",
    ".cfi_endproc",
    ".size iolab_coro_trampoline, . - iolab_coro_trampoline",
);

/// The aarch64 first frame, 32 bytes below `top`: the trampoline's
/// address, entry, data, padding. Once the trampoline has read it, sp is
/// `top`, aligned.
///
/// # Safety
///
/// As for [`Context::fresh`].
#[cfg(target_arch = "aarch64")]
unsafe fn first_frame(top: usize, entry: Entry, data: usize) -> usize {
    let frame = top - 32;
    let slots = [
        iolab_coro_trampoline as *const () as usize,
        entry as *const () as usize,
        data,
        0,
    ];
    for (i, value) in slots.into_iter().enumerate() {
        // SAFETY: the caller gave us a writable stack below `top`; the
        // frame is 16-byte aligned, so every 8-byte slot is aligned.
        unsafe { ((frame + 8 * i) as *mut usize).write(value) };
    }
    frame
}
