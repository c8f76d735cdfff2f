//! Both read-store adapters run the same conformance suite: the CQL one on the Cassandra node
//! this test binary starts (or the cluster at `SCYLLA_URI`, e.g. a real ScyllaDB).

use std::time::{SystemTime, UNIX_EPOCH};

use platform::store::{CellKey, CqlOptions, EmbeddedStore, ReadStore, ScyllaStore, conformance};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_passes_conformance() {
    let dir = tempfile::tempdir().expect("Failed to create a temporary directory");
    let store = EmbeddedStore::open(dir.path()).expect("Failed to open the embedded store");
    conformance::run_all(&store, "conformance").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_keeps_acknowledged_writes_across_a_restart() {
    let dir = tempfile::tempdir().expect("Failed to create a temporary directory");
    let kept = CellKey {
        namespace: "kept",
        table: "t",
        partition: "p",
        clustering: "c",
    };
    let deleted = CellKey {
        clustering: "deleted",
        ..kept
    };
    let dropped = CellKey {
        namespace: "dropped",
        ..kept
    };
    let reused = CellKey {
        namespace: "reused",
        ..kept
    };

    // Arrange: writes, a tombstone, a dropped namespace and a re-created one.
    {
        let store = EmbeddedStore::open(dir.path()).expect("Failed to open the embedded store");
        store.put(kept, b"v1", 1).await.unwrap();
        store.put(kept, b"v2", 2).await.unwrap();
        store.put(deleted, b"gone", 1).await.unwrap();
        store.delete(deleted, 5).await.unwrap();
        store.put(dropped, b"gone", 1).await.unwrap();
        store.drop_namespace("dropped").await.unwrap();
        store.put(reused, b"old", 1).await.unwrap();
        store.drop_namespace("reused").await.unwrap();
        store.put(reused, b"new", 1).await.unwrap();
    }

    // Act: reopen the same directory, as a restarted process would.
    let store = EmbeddedStore::open(dir.path()).expect("Failed to reopen the embedded store");

    // Assert
    let cell = store
        .get(kept)
        .await
        .unwrap()
        .expect("an acknowledged write was lost");
    assert_eq!((cell.value.as_slice(), cell.write_ts), (&b"v2"[..], 2));
    assert_eq!(store.get(deleted).await.unwrap(), None, "a delete was lost");
    store.put(deleted, b"stale", 4).await.unwrap();
    assert_eq!(
        store.get(deleted).await.unwrap(),
        None,
        "a tombstone's timestamp was lost"
    );
    assert_eq!(
        store.get(dropped).await.unwrap(),
        None,
        "a dropped namespace came back"
    );
    let cell = store
        .get(reused)
        .await
        .unwrap()
        .expect("a re-created namespace was lost");
    assert_eq!(cell.value, b"new");

    // The reopened store is fully usable, including the suite.
    conformance::run_all(&store, "after_restart").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cql_store_passes_conformance() {
    let uri = match std::env::var("SCYLLA_URI") {
        Ok(uri) => uri,
        Err(_) => platform::local::shared::cassandra().await.uri(),
    };
    let replication = std::env::var("SCYLLA_REPLICATION")
        .unwrap_or_else(|_| "{'class':'SimpleStrategy','replication_factor':1}".to_string());
    let credentials = std::env::var("SCYLLA_USERNAME")
        .ok()
        .map(|user| (user, std::env::var("SCYLLA_PASSWORD").unwrap_or_default()));
    let store = ScyllaStore::connect(&uri, "conf", &replication, credentials, &CqlOptions::default())
        .await
        .unwrap_or_else(|e| panic!("CQL conformance suite at {uri}: {e}"));

    // A fresh namespace per run, so runs never see each other's data.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_nanos();
    let namespace = format!("run_{:x}", nanos as u64);
    conformance::run_all(&store, &namespace).await;
}

/// Replays write through a write-behind overlay: it keeps the store's rules while it holds the
/// writes, and the store has each cell's last state once it is flushed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_overlay_passes_conformance_and_flushes_each_cells_last_state() {
    use std::sync::Arc;
    use platform::store::WriteBehind;
    let dir = tempfile::tempdir().expect("Failed to create a temporary directory");
    let store: Arc<dyn ReadStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("Failed to open the embedded store"));
    let overlay = WriteBehind::new(store.clone());
    conformance::run_all(&overlay, "overlay").await;

    let row = |clustering| CellKey { namespace: "replayed", table: "t", partition: "p", clustering };
    // Already in the store before the replay: a newer cell the replay's older write must not beat.
    store.put(row("newer"), b"store", 10).await.unwrap();
    store.put(row("gone"), b"store", 1).await.unwrap();
    for version in 1..=100 {
        overlay.put(row("row"), format!("v{version}").as_bytes(), version).await.unwrap();
    }
    overlay.put(row("newer"), b"replay", 5).await.unwrap();
    overlay.delete(row("gone"), 2).await.unwrap();
    overlay.put(row("gone"), b"resurrected?", 1).await.unwrap();
    assert_eq!(overlay.get(row("row")).await.unwrap().unwrap().value, b"v100");
    assert_eq!(store.get(row("row")).await.unwrap(), None, "nothing written before the flush");
    assert_eq!(overlay.pending(), 2);
    overlay.flush().await.unwrap();
    assert_eq!(overlay.pending(), 0);
    let cell = store.get(row("row")).await.unwrap().unwrap();
    assert_eq!((cell.value.as_slice(), cell.write_ts), (&b"v100"[..], 100));
    assert_eq!(store.get(row("newer")).await.unwrap().unwrap().value, b"store");
    assert_eq!(store.get(row("gone")).await.unwrap(), None);
    // A deletion stays known after the flush: an older write does not show through.
    overlay.put(row("gone"), b"older", 1).await.unwrap();
    assert_eq!(overlay.get(row("gone")).await.unwrap(), None);
}

/// A fresh replay's overlay does not ask the store for cells it never wrote, and still finds
/// the ones it flushed and forgot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlay_over_an_empty_namespace_passes_conformance_and_reads_back_what_it_flushed() {
    use std::sync::Arc;
    use platform::store::WriteBehind;
    let dir = tempfile::tempdir().expect("Failed to create a temporary directory");
    let store: Arc<dyn ReadStore> = Arc::new(EmbeddedStore::open(dir.path()).expect("Failed to open the embedded store"));
    conformance::run_all(&WriteBehind::over_empty(store.clone()), "fresh").await;

    let overlay = WriteBehind::over_empty(store.clone());
    let row = |clustering| CellKey { namespace: "rebuilt", table: "t", partition: "p", clustering };
    overlay.put(row("a"), b"v2", 2).await.unwrap();
    overlay.delete(row("b"), 3).await.unwrap();
    overlay.flush().await.unwrap();
    assert_eq!(overlay.pending(), 0);
    // Forgotten by the overlay after the flush, read back from the store.
    let cell = overlay.get(row("a")).await.unwrap().unwrap();
    assert_eq!((cell.value.as_slice(), cell.write_ts), (&b"v2"[..], 2));
    overlay.put(row("a"), b"v1", 1).await.unwrap();
    assert_eq!(overlay.get(row("a")).await.unwrap().unwrap().value, b"v2", "an older write loses to the flushed one");
    overlay.put(row("b"), b"v1", 1).await.unwrap();
    assert_eq!(overlay.get(row("b")).await.unwrap(), None, "the deletion still hides older writes");
    assert_eq!(overlay.get(row("never")).await.unwrap(), None);
}
