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

use std::arch::global_asm;

// switch(save_rsp_to: *mut usize  [rdi],
//        load_rsp:    usize       [rsi],
//        message:     usize       [rdx]) -> usize [rax]
//
// Returns, on the other side, `message`: the value the switching side
// passed, so each resumption can carry one word (a pointer, a command).
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

extern "C" {
    fn iolab_coro_switch(save_rsp_to: *mut usize, load_rsp: usize, message: usize) -> usize;
    fn iolab_coro_trampoline();
}

/// The entry function of a fresh coroutine: gets the first message and the
/// data word laid in its first frame. It must never return.
pub type Entry = unsafe extern "C" fn(message: usize, data: usize) -> !;

/// Where a suspended side of a switch left its stack pointer.
#[derive(Debug, Default)]
pub struct Context {
    rsp: usize,
}

/// MXCSR as the ABI expects it at a function boundary: all exceptions
/// masked, round to nearest.
const MXCSR_DEFAULT: u64 = 0x1F80;
/// x87 control word at a function boundary: all exceptions masked, 64-bit
/// precision, round to nearest.
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
        // The first frame, from the top down (each slot 8 bytes):
        //   top-8, top-16   padding (zero), so that after `ret` into the
        //                   trampoline rsp = top-16, 16-byte aligned
        //   top-24          return address: the trampoline
        //   top-32          rbp = 0: a zero frame pointer ends backtraces
        //   top-40          rbx = 0
        //   top-48          r12 = entry
        //   top-56          r13 = data
        //   top-64, top-72  r14, r15 = 0
        //   top-80          MXCSR | x87 control word << 32
        let top = stack_top & !15;
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
        Context { rsp: top - 80 }
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
        unsafe { iolab_coro_switch(&mut self.rsp, to.rsp, message) }
    }
}
