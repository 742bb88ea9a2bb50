//! Wakers of tasks: a thin pointer to the task's allocation and a vtable
//! made for the task's concrete type, so a waker costs no allocation and
//! cloning one is a reference-count increment.
//!
//! The data pointer is the address of the concrete `Arc<Task<Core<F>>>`'s
//! record (`Arc::as_ptr`, the same as `Arc::into_raw` gives); each vtable function turns it back into that `Arc`
//! (the only type it was made from), and from there into the type-erased
//! `Arc<Task>` the queues hold.

use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::Arc;
use std::task::{RawWaker, RawWakerVTable, Waker};

use super::body::Body;
use super::raw::Task;

/// The vtable for tasks whose body is `B`.
pub(crate) struct VTableFor<B>(PhantomData<B>);

impl<B: Body + 'static> VTableFor<B> {
    pub(crate) const VTABLE: RawWakerVTable =
        RawWakerVTable::new(clone::<B>, wake::<B>, wake_by_ref::<B>, drop_waker::<B>);
}

/// A waker for the poll of `task`, borrowing the caller's reference: no
/// count changes unless the poll clones it.
pub(crate) fn borrowed(task: &Arc<Task>) -> ManuallyDrop<Waker> {
    let data = Arc::as_ptr(task).cast::<()>();
    // `data` points to the live allocation of a `Task<B>` whose vtable is
    // `task.waker_vtable` (set with it in `Task::new`), so every vtable
    // function receives the pointer type it expects. `ManuallyDrop` keeps
    // this waker from releasing a reference it never took.
    // SAFETY: as above; the caller's `Arc` keeps the record alive.
    let waker = unsafe { Waker::from_raw(RawWaker::new(data, task.waker_vtable)) };
    ManuallyDrop::new(waker)
}

unsafe fn clone<B: Body + 'static>(data: *const ()) -> RawWaker {
    let task = data.cast::<Task<B>>();
    // SAFETY: `data` came from an `Arc<Task<B>>` that is still alive (the
    // waker being cloned holds, or borrows, a reference).
    unsafe { Arc::increment_strong_count(task) };
    // The record's own vtable pointer, not `&VTABLE` again: a promoted
    // constant may have several addresses, and `Waker::will_wake` compares
    // them.
    // SAFETY: as above, the record is alive.
    RawWaker::new(data, unsafe { (*task).waker_vtable })
}

unsafe fn wake<B: Body + 'static>(data: *const ()) {
    // SAFETY: consumes the reference this waker owned (`clone` took it).
    let task: Arc<Task<B>> = unsafe { Arc::from_raw(data.cast::<Task<B>>()) };
    if task.state.schedule() {
        super::raw::enqueue(task);
    }
}

unsafe fn wake_by_ref<B: Body + 'static>(data: *const ()) {
    // SAFETY: borrows the waker's reference without releasing it.
    let task = ManuallyDrop::new(unsafe { Arc::from_raw(data.cast::<Task<B>>()) });
    let task: &Arc<Task<B>> = &task;
    if task.state.schedule() {
        let task: Arc<Task> = task.clone();
        super::raw::enqueue(task);
    }
}

unsafe fn drop_waker<B: Body + 'static>(data: *const ()) {
    // SAFETY: releases the reference this waker owned.
    drop(unsafe { Arc::from_raw(data.cast::<Task<B>>()) });
}
