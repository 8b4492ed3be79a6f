//! The benchmark scenario runs to completion and delivers all 200 datagrams.
//! (`cargo run --release -p burrow-sim -- speed` reports the rate.)

#[test]
fn speed_batch_delivers_everything() {
    let t = burrow_sim::demo::speed_batch(20).unwrap();
    assert_eq!(t.scenarios, 20);
    assert_eq!(t.delivered, 20 * 200);
}
