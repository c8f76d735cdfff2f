use std::sync::Arc;
use std::time::Duration;

use load_tests::client::{ApiClient, Targets};
use load_tests::mix::{Mix, Operation};
use load_tests::run::{Schedule, run_open_model};
use load_tests::scenario::Marketplace;

use crate::helpers::{Deployment, TestBroker};

both_stores! {
async fn the_load_generator_drives_every_route_of_the_mix_without_errors() {
    let broker = TestBroker::start().await;
    let app = Deployment::new(&broker).await.spawn().await;
    let client = ApiClient::new(Targets::single(&app.base), Duration::from_secs(10)).unwrap();
    let marketplace = Arc::new(Marketplace::new(client));
    marketplace.seed(4, 20, 4).await.expect("seeding works against a healthy system");
    assert_eq!((marketplace.user_count(), marketplace.for_sale_count()), (4, 20));

    // Every share present and big enough to be drawn in 120 arrivals.
    let mix: Mix = "browse=30,show=15,write=20,order=15,pay=10,session=10".parse().unwrap();
    let schedule = Schedule { rate: 40.0, duration: Duration::from_secs(3) };
    let mut lines = 0;
    let report = run_open_model(marketplace.clone(), schedule, &mix, |_| lines += 1).await;

    assert!(lines >= 2, "a progress line every second");
    assert_eq!(report.errors(), 0, "{report:#?}");
    let accounted: u64 = report.routes.iter().map(|r| r.succeeded + r.rejected + r.skipped).sum();
    assert_eq!(accounted, report.sent, "every arrival is answered or skipped");
    for operation in [Operation::Browse, Operation::Show, Operation::CreateTicket, Operation::Order] {
        let route = report.routes.iter().find(|r| r.route == operation.route()).expect("route in the report");
        assert!(route.succeeded > 0 && route.latency.count == route.succeeded + route.rejected, "{route:?}");
    }
    // Orders became payable and paying them succeeded.
    let paid = report.routes.iter().find(|r| r.route == Operation::Pay.route()).map(|r| r.succeeded).unwrap_or(0);
    assert!(paid > 0, "{report:#?}");
    // Ticket and order commands were read back through their consistency tokens.
    assert!(report.visibility.count > 0 && report.stale_reads == 0, "{report:#?}");
    app.stop().await;
}
}
