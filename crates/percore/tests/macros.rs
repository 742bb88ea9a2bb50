//! `#[percore::test]` and `#[percore::main]`-style expansion: the body runs
//! on a percore worker, with the requested worker count and driver.

#[percore::test]
async fn a_test_runs_on_a_worker() {
    assert_eq!(percore::worker_index(), Some(0));
    let v = percore::spawn(async { 21 * 2 }).await.unwrap();
    assert_eq!(v, 42);
}

#[percore::test(workers = 2, driver = "epoll")]
async fn arguments_set_workers_and_driver() {
    assert_eq!(percore::Handle::current().workers(), 2);
    // Epoll: a nop is a yield, no ring.
    percore::nop().await.unwrap();
}

#[percore::test(workers = 1)]
async fn a_test_can_return_a_result() -> Result<(), String> {
    percore::time::sleep(std::time::Duration::from_millis(1)).await;
    Ok(())
}

#[percore::test]
async fn the_body_may_hold_non_send_values_across_awaits() {
    // Built on worker 0 (`block_on_local`): an Rc across an await compiles
    // and runs.
    let rc = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    rc.borrow_mut().push(1);
    percore::task::yield_now().await;
    rc.borrow_mut().push(2);
    assert_eq!(*rc.borrow(), [1, 2]);
}

#[test]
fn block_on_local_runs_a_non_send_future_on_worker_0_and_resumes_its_panic() {
    let rt = percore::Runtime::builder().workers(2).build().unwrap();
    let (index, n) = rt.block_on_local(|| async {
        let rc = std::rc::Rc::new(5);
        percore::time::sleep(std::time::Duration::from_millis(1)).await;
        (percore::worker_index(), *rc)
    });
    assert_eq!((index, n), (Some(0), 5));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on_local(|| async { panic!("boom from a local future") })
    }));
    let msg = r.unwrap_err();
    assert_eq!(
        msg.downcast_ref::<&str>(),
        Some(&"boom from a local future")
    );
}
