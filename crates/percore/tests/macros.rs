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
