//! The context switch: save one coroutine's registers, load another's.
//!
//! A coroutine is a stack and the registers that say where on it the code
//! was. Switching is therefore: push the registers the System V x86-64 ABI
//! says a function must preserve (the *callee-saved* ones) onto the current
//! stack, store the stack pointer, load the other stack pointer, pop its
//! registers, and `ret` into wherever it left off. Caller-saved registers
//! need no saving: the switch is an ordinary function call, so the compiler
//! already assumes they are clobbered. That is the whole trick behind
//! greenlet, Boost.Context, and corosensei; here it is ~20 instructions.
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
//! The SSE registers `xmm0`–`xmm15` are all caller-saved on SysV, so a
//! function call (which is what `switch` is) never promises to keep them.
//!
//! On aarch64 (AAPCS64 §6.1) the same idea saves more, because the ABI
//! gives callees more registers to keep:
//!
//! | register | why it must survive |
//! |---|---|
//! | `x19`–`x28` | callee-saved general registers |
//! | `x29` (`fp`) | the frame pointer: callee-saved |
//! | `x30` (`lr`) | the return address: `ret` jumps to it, so loading the other side's is the jump |
//! | `sp` | the stack itself: stored in the `Context` |
//! | `d8`–`d15` | the low halves of `v8`–`v15` are callee-saved |
//! | FPCR | rounding mode and trap enables, like MXCSR's control bits |
//!
//! The two versions are written side by side below; `Context::fresh` lays
//! out each one's first frame.

use std::arch::global_asm;

// switch(save_rsp_to: *mut usize  [rdi],
//        load_rsp:    usize       [rsi],
//        message:     usize       [rdx]) -> usize [rax]
//
// Returns, on the other side, `message`: the value the switching side
// passed, so each resumption can carry one word (a pointer, a command).
#[cfg(target_arch = "x86_64")]
global_asm!(
    ".text",
    ".global iolab_coro_switch",
    ".type iolab_coro_switch, @function",
    "iolab_coro_switch:",
    // Callee-saved general registers, in the order the first frame of a
    // fresh stack is laid out in (see `Context::fresh`).
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    // MXCSR (4 bytes) and the x87 control word (2 bytes) in one 8-byte slot.
    "sub rsp, 8",
    "stmxcsr [rsp]",
    "fnstcw [rsp + 4]",
    // Swap stacks.
    "mov [rdi], rsp",
    "mov rsp, rsi",
    // And unwind the other side's frame.
    "ldmxcsr [rsp]",
    "fldcw [rsp + 4]",
    "add rsp, 8",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "mov rax, rdx",
    "ret",
    ".size iolab_coro_switch, . - iolab_coro_switch",
    //
    // The first instruction a fresh coroutine runs: `switch` `ret`s here
    // with r12 = the entry function and r13 = its data word (both popped
    // from the fresh frame), rax = the message of the first switch, and rsp
    // 16-byte aligned, as the ABI wants at a `call`.
    ".global iolab_coro_trampoline",
    ".type iolab_coro_trampoline, @function",
    "iolab_coro_trampoline:",
    "mov rdi, rax",
    "mov rsi, r13",
    "call r12",
    // The entry function never returns (it switches away for good).
    "ud2",
    ".size iolab_coro_trampoline, . - iolab_coro_trampoline",
);

// The same two functions for aarch64: x0 = save_sp_to, x1 = load_sp,
// x2 = message; the message comes back in x0.
#[cfg(target_arch = "aarch64")]
global_asm!(
    ".text",
    ".global iolab_coro_switch",
    ".type iolab_coro_switch, %function",
    "iolab_coro_switch:",
    // One 176-byte frame (sp stays 16-byte aligned, as AAPCS64 requires at
    // every access): x19-x30 at 0..96, d8-d15 at 96..160, FPCR at 160.
    "sub sp, sp, #176",
    "stp x19, x20, [sp, #0]",
    "stp x21, x22, [sp, #16]",
    "stp x23, x24, [sp, #32]",
    "stp x25, x26, [sp, #48]",
    "stp x27, x28, [sp, #64]",
    "stp x29, x30, [sp, #80]",
    "stp d8, d9, [sp, #96]",
    "stp d10, d11, [sp, #112]",
    "stp d12, d13, [sp, #128]",
    "stp d14, d15, [sp, #144]",
    "mrs x9, fpcr",
    "str x9, [sp, #160]",
    // Swap stacks (sp cannot be stored directly: go through x9).
    "mov x9, sp",
    "str x9, [x0]",
    "mov sp, x1",
    // And unwind the other side's frame.
    "ldr x9, [sp, #160]",
    "msr fpcr, x9",
    "ldp d14, d15, [sp, #144]",
    "ldp d12, d13, [sp, #128]",
    "ldp d10, d11, [sp, #112]",
    "ldp d8, d9, [sp, #96]",
    "ldp x29, x30, [sp, #80]",
    "ldp x27, x28, [sp, #64]",
    "ldp x25, x26, [sp, #48]",
    "ldp x23, x24, [sp, #32]",
    "ldp x21, x22, [sp, #16]",
    "ldp x19, x20, [sp, #0]",
    "add sp, sp, #176",
    "mov x0, x2",
    // Jump to the other side's saved x30: where it called switch from, or
    // the trampoline for a fresh stack.
    "ret",
    ".size iolab_coro_switch, . - iolab_coro_switch",
    //
    // A fresh coroutine's first instruction: x19 = the entry function, x20
    // = its data word (both loaded from the fresh frame), x0 = the message,
    // sp = the 16-byte aligned top of the stack, x29 = 0.
    ".global iolab_coro_trampoline",
    ".type iolab_coro_trampoline, %function",
    "iolab_coro_trampoline:",
    "mov x1, x20",
    "blr x19",
    // The entry function never returns.
    "brk #1",
    ".size iolab_coro_trampoline, . - iolab_coro_trampoline",
);

extern "C" {
    fn iolab_coro_switch(save_sp_to: *mut usize, load_sp: usize, message: usize) -> usize;
    fn iolab_coro_trampoline();
}

/// The entry function of a fresh coroutine: gets the first message and the
/// data word laid in its first frame. It must never return.
pub type Entry = unsafe extern "C" fn(message: usize, data: usize) -> !;

/// Where a suspended side of a switch left its stack pointer.
#[derive(Debug, Default)]
pub struct Context {
    /// The saved stack pointer (`rsp` on x86-64, `sp` on aarch64); the
    /// registers are on the stack it points into.
    sp: usize,
}

/// MXCSR as the ABI expects it at a function boundary: all exceptions
/// masked, round to nearest.
#[cfg(target_arch = "x86_64")]
const MXCSR_DEFAULT: u64 = 0x1F80;
/// x87 control word at a function boundary: all exceptions masked, 64-bit
/// precision, round to nearest.
#[cfg(target_arch = "x86_64")]
const FPUCW_DEFAULT: u64 = 0x037F;

impl Context {
    /// A context that, when switched to, runs `entry(message, data)` on the
    /// stack whose highest address is `stack_top`.
    ///
    /// # Safety
    ///
    /// `stack_top` must be the top of a writable stack at least a few KiB
    /// deep, that stays allocated (and is used by nothing else) until the
    /// coroutine has switched away for the last time.
    pub unsafe fn fresh(stack_top: usize, entry: Entry, data: usize) -> Context {
        // SAFETY: the caller's promise is the one first_frame needs.
        let sp = unsafe { first_frame(stack_top & !15, entry, data) };
        Context { sp }
    }

    /// Saves the current registers into `self` and resumes `to`, passing
    /// `message`; returns the message of whoever switches back to `self`.
    ///
    /// # Safety
    ///
    /// `to` must be a context made by [`Context::fresh`] or saved by a
    /// `switch` that has not been resumed since, whose stack is still
    /// allocated. Nothing may unwind across a switch (the coroutine entry
    /// catches panics).
    pub unsafe fn switch(&mut self, to: &Context, message: usize) -> usize {
        // SAFETY: upheld by the caller; the assembly saves every register
        // the ABI asks a callee to preserve.
        unsafe { iolab_coro_switch(&mut self.sp, to.sp, message) }
    }
}

/// Lays out a fresh stack's first frame below `top` (16-byte aligned): the
/// frame `switch` unwinds when it first switches there. Returns the stack
/// pointer to load.
///
/// # Safety
///
/// As for [`Context::fresh`].
#[cfg(target_arch = "x86_64")]
unsafe fn first_frame(top: usize, entry: Entry, data: usize) -> usize {
    // From the top down (each slot 8 bytes):
    //   top-8, top-16   padding (zero), so that after `ret` into the
    //                   trampoline rsp = top-16, 16-byte aligned
    //   top-24          return address: the trampoline
    //   top-32          rbp = 0: a zero frame pointer ends backtraces
    //   top-40          rbx = 0
    //   top-48          r12 = entry
    //   top-56          r13 = data
    //   top-64, top-72  r14, r15 = 0
    //   top-80          MXCSR | x87 control word << 32
    let slots: [(usize, u64); 10] = [
        (8, 0),
        (16, 0),
        (24, iolab_coro_trampoline as *const () as usize as u64),
        (32, 0),
        (40, 0),
        (48, entry as *const () as usize as u64),
        (56, data as u64),
        (64, 0),
        (72, 0),
        (80, MXCSR_DEFAULT | (FPUCW_DEFAULT << 32)),
    ];
    for (offset, value) in slots {
        // SAFETY: the caller gave us a writable stack below `top`.
        unsafe { ((top - offset) as *mut u64).write(value) };
    }
    top - 80
}

/// The aarch64 first frame: the 176-byte frame `switch` unwinds, with x19 =
/// entry, x20 = data, x29 = 0 (a zero frame pointer ends backtraces), x30 =
/// the trampoline (`ret` goes there), every other register and FPCR zero
/// (round to nearest, no traps: the state at a function boundary). Once it
/// is unwound, sp is `top`, aligned.
///
/// # Safety
///
/// As for [`Context::fresh`].
#[cfg(target_arch = "aarch64")]
unsafe fn first_frame(top: usize, entry: Entry, data: usize) -> usize {
    let frame = top - 176;
    // SAFETY: the caller gave us a writable stack below `top`; the frame is
    // 16-byte aligned, so every 8-byte slot is aligned.
    unsafe {
        std::ptr::write_bytes(frame as *mut u8, 0, 176);
        (frame as *mut u64).write(entry as *const () as usize as u64);
        ((frame + 8) as *mut u64).write(data as u64);
        ((frame + 88) as *mut u64).write(iolab_coro_trampoline as *const () as usize as u64);
    }
    frame
}
