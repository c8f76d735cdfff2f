//! The read-store conformance suite: the behaviour every [`ReadStore`] adapter must share, so
//! read models written against the embedded store run unchanged on ScyllaDB.
//!
//! It is an ordinary module (not test-only) so that each adapter's integration test, in any
//! crate, runs the very same checks. Every check panics with the rule it found broken.

use futures::future::join_all;

use super::{Cell, CellKey, CellWrite, Page, ReadStore, StoreError, validate_name};

/// Longest namespace [`run_all`] accepts: it also uses `<namespace>_b`.
pub const MAX_NAMESPACE_LEN: usize = 38;

/// Runs every check against `store` in `namespace` and `<namespace>_b`.
///
/// Both namespaces are dropped before and after the run, so pass names nothing else uses.
/// Panics with a message naming the broken rule.
pub async fn run_all<S: ReadStore>(store: &S, namespace: &str) {
    let other = format!("{namespace}_b");
    assert!(
        validate_name(&other).is_ok(),
        "conformance: namespace {namespace:?} must be [a-z0-9_], 1 to {MAX_NAMESPACE_LEN} characters"
    );
    drop_namespace(store, namespace).await;
    drop_namespace(store, &other).await;

    ping_answers(store).await;
    round_trip(store, namespace, &other).await;
    higher_timestamp_replaces(store, namespace).await;
    lower_timestamp_is_ignored(store, namespace).await;
    delete_hides_and_newer_write_resurrects(store, namespace).await;
    older_delete_is_ignored(store, namespace).await;
    equal_timestamps_follow_cassandra(store, namespace).await;
    scan_orders_and_pages(store, namespace).await;
    keys_are_isolated(store, namespace, &other).await;
    concurrent_writes_keep_the_newest(store, namespace).await;
    many_writes_follow_the_rule_one_by_one(store, namespace, &other).await;
    namespace_scans_see_every_live_cell_once(store, namespace, &other).await;
    drop_namespace_empties_only_that_namespace(store, namespace, &other).await;
    invalid_names_are_rejected(store, namespace).await;

    drop_namespace(store, namespace).await;
    drop_namespace(store, &other).await;
}

async fn ping_answers<S: ReadStore>(store: &S) {
    if let Err(e) = store.ping().await {
        panic!("conformance [ping]: ping failed: {e}");
    }
}

async fn round_trip<S: ReadStore>(store: &S, ns: &str, unused_ns: &str) {
    const RULE: &str = "put/get round trip";
    let hello = key(ns, "round_trip", "p1", "c1");
    put(store, hello, b"hello", 1).await;
    expect(RULE, store, hello, Some((b"hello", 1))).await;

    // An empty value is a value, not a deletion.
    let empty = key(ns, "round_trip", "p1", "c2");
    put(store, empty, b"", 1).await;
    expect(RULE, store, empty, Some((b"", 1))).await;

    let binary: Vec<u8> = (0..=255).collect();
    let all_bytes = key(ns, "round_trip", "p1", "c3");
    put(store, all_bytes, &binary, 1_700_000_000_000_000).await;
    expect(
        RULE,
        store,
        all_bytes,
        Some((&binary, 1_700_000_000_000_000)),
    )
    .await;

    expect(RULE, store, key(ns, "round_trip", "p1", "missing"), None).await;
    expect(RULE, store, key(ns, "round_trip", "missing", "c1"), None).await;
    expect(RULE, store, key(ns, "missing", "p1", "c1"), None).await;

    // Reading a namespace nobody wrote to is not an error.
    expect(RULE, store, key(unused_ns, "round_trip", "p1", "c1"), None).await;
    let page = scan(store, unused_ns, "round_trip", "p1", None, 10).await;
    assert_page(RULE, &page, &[], None);
}

async fn higher_timestamp_replaces<S: ReadStore>(store: &S, ns: &str) {
    const RULE: &str = "a higher timestamp replaces";
    let cell = key(ns, "replace", "p", "c");
    put(store, cell, b"v1", 5).await;
    put(store, cell, b"v2", 6).await;
    expect(RULE, store, cell, Some((b"v2", 6))).await;
    // A smaller value still wins with a higher timestamp.
    put(store, cell, b"a", 7).await;
    expect(RULE, store, cell, Some((b"a", 7))).await;
}

async fn lower_timestamp_is_ignored<S: ReadStore>(store: &S, ns: &str) {
    const RULE: &str = "a lower timestamp is ignored";
    let cell = key(ns, "older", "p", "c");
    put(store, cell, b"v5", 5).await;
    put(store, cell, b"v4", 4).await;
    expect(RULE, store, cell, Some((b"v5", 5))).await;
    // A greater value does not help an older write.
    put(store, cell, b"zzzz", 4).await;
    expect(RULE, store, cell, Some((b"v5", 5))).await;
}

async fn delete_hides_and_newer_write_resurrects<S: ReadStore>(store: &S, ns: &str) {
    const RULE: &str = "a newer delete hides, a newer write resurrects";
    let cell = key(ns, "resurrect", "p", "c");
    put(store, cell, b"a", 5).await;
    delete(store, cell, 6).await;
    expect(RULE, store, cell, None).await;
    put(store, cell, b"older", 5).await;
    expect(RULE, store, cell, None).await;
    put(store, cell, b"b", 7).await;
    expect(RULE, store, cell, Some((b"b", 7))).await;

    // A tombstone written before any value still hides older writes that arrive later.
    let early = key(ns, "resurrect", "p", "deleted_first");
    delete(store, early, 10).await;
    expect(RULE, store, early, None).await;
    put(store, early, b"stale", 9).await;
    expect(RULE, store, early, None).await;
    put(store, early, b"fresh", 11).await;
    expect(RULE, store, early, Some((b"fresh", 11))).await;
}

async fn older_delete_is_ignored<S: ReadStore>(store: &S, ns: &str) {
    const RULE: &str = "an older delete is ignored";
    let cell = key(ns, "old_delete", "p", "c");
    put(store, cell, b"a", 5).await;
    delete(store, cell, 4).await;
    expect(RULE, store, cell, Some((b"a", 5))).await;
}

async fn equal_timestamps_follow_cassandra<S: ReadStore>(store: &S, ns: &str) {
    const RULE: &str = "equal timestamps: a delete beats a write, the greater value wins";
    let cell = key(ns, "equal_ts", "p", "c");
    put(store, cell, b"b", 5).await;
    put(store, cell, b"a", 5).await;
    expect(RULE, store, cell, Some((b"b", 5))).await;
    put(store, cell, b"c", 5).await;
    expect(RULE, store, cell, Some((b"c", 5))).await;
    // Replaying the same event changes nothing.
    put(store, cell, b"c", 5).await;
    expect(RULE, store, cell, Some((b"c", 5))).await;
    delete(store, cell, 5).await;
    expect(RULE, store, cell, None).await;
    put(store, cell, b"zzzz", 5).await;
    expect(RULE, store, cell, None).await;
    put(store, cell, b"d", 6).await;
    expect(RULE, store, cell, Some((b"d", 6))).await;

    // Values compare as unsigned bytes.
    let bytes = key(ns, "equal_ts", "p", "unsigned");
    put(store, bytes, &[0x7f], 8).await;
    put(store, bytes, &[0x80], 8).await;
    put(store, bytes, &[0x7f, 0xff], 8).await;
    expect(RULE, store, bytes, Some((&[0x80], 8))).await;
}

async fn scan_orders_and_pages<S: ReadStore>(store: &S, ns: &str) {
    const RULE: &str = "scans are ordered by clustering key and paged";
    // Written out of order: 7 is coprime with 25, so this visits every index once.
    for i in 0..25 {
        let j = (i * 7) % 25;
        put(
            store,
            key(ns, "scan", "p", &format!("c{j:02}")),
            format!("v{j:02}").as_bytes(),
            1,
        )
        .await;
    }
    // Tombstones between live cells must be skipped, not counted.
    for dead in ["c03x", "c09x", "c10x", "c19x", "c24x"] {
        put(store, key(ns, "scan", "p", dead), b"dead", 1).await;
        delete(store, key(ns, "scan", "p", dead), 2).await;
    }
    delete(store, key(ns, "scan", "p", "c15a"), 2).await;
    // Neighbouring partitions must stay out of the scan.
    put(store, key(ns, "scan", "p0", "c00"), b"neighbour", 1).await;
    put(store, key(ns, "scan", "q", "c00"), b"neighbour", 1).await;

    let names =
        |range: std::ops::Range<usize>| range.map(|i| format!("c{i:02}")).collect::<Vec<_>>();

    let first = scan(store, ns, "scan", "p", None, 10).await;
    assert_page(RULE, &first, &names(0..10), Some("c09"));
    assert_eq!(
        (first.cells[3].value.as_slice(), first.cells[3].write_ts),
        (&b"v03"[..], 1),
        "conformance [{RULE}]: wrong value or timestamp in a scanned cell"
    );
    let second = scan(store, ns, "scan", "p", first.next.as_deref(), 10).await;
    assert_page(RULE, &second, &names(10..20), Some("c19"));
    let third = scan(store, ns, "scan", "p", second.next.as_deref(), 10).await;
    assert_page(RULE, &third, &names(20..25), None);

    // `next` is None exactly when nothing follows, even on a full page.
    let exact = scan(store, ns, "scan", "p", None, 25).await;
    assert_page(RULE, &exact, &names(0..25), None);
    let all_but_one = scan(store, ns, "scan", "p", None, 24).await;
    assert_page(RULE, &all_but_one, &names(0..24), Some("c23"));
    let tail = scan(store, ns, "scan", "p", Some("c20"), 4).await;
    assert_page(RULE, &tail, &names(21..25), None);

    // `after` is exclusive and need not be a stored key.
    let from_gap = scan(store, ns, "scan", "p", Some("c04zz"), 3).await;
    assert_page(RULE, &from_gap, &names(5..8), Some("c07"));
    let from_tombstone = scan(store, ns, "scan", "p", Some("c09x"), 2).await;
    assert_page(RULE, &from_tombstone, &names(10..12), Some("c11"));
    let past_end = scan(store, ns, "scan", "p", Some("c99"), 10).await;
    assert_page(RULE, &past_end, &[], None);
    let empty = scan(store, ns, "scan", "nobody", None, 10).await;
    assert_page(RULE, &empty, &[], None);

    // Clustering keys sort by their UTF-8 bytes.
    let mut keys = vec!["b", "B", "ab", "a", "\u{e9}", "a b", "0", "a\u{0}"];
    for ck in &keys {
        put(store, key(ns, "order", "p", ck), ck.as_bytes(), 1).await;
    }
    keys.sort_unstable();
    let expected: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
    let ordered = scan(store, ns, "order", "p", None, 100).await;
    assert_page("clustering keys sort by bytes", &ordered, &expected, None);

    assert!(
        store.scan(ns, "scan", "p", None, 0).await.is_err(),
        "conformance [{RULE}]: a scan with limit 0 must be refused, a paging loop would never end"
    );
}

async fn keys_are_isolated<S: ReadStore>(store: &S, ns: &str, other: &str) {
    const RULE: &str = "namespaces, tables, partitions and clustering keys are isolated";
    // "t"/"t1" and "p"/"p1" are prefixes of each other on purpose.
    let places: Vec<(&str, &str, &str)> = [ns, other]
        .into_iter()
        .flat_map(|n| {
            ["t", "t1"]
                .into_iter()
                .flat_map(move |t| ["p", "p1"].into_iter().map(move |p| (n, t, p)))
        })
        .collect();
    for &(n, t, p) in &places {
        put(
            store,
            key(n, t, p, "c"),
            format!("{n}/{t}/{p}").as_bytes(),
            1,
        )
        .await;
    }
    for &(n, t, p) in &places {
        let expected = format!("{n}/{t}/{p}");
        expect(
            RULE,
            store,
            key(n, t, p, "c"),
            Some((expected.as_bytes(), 1)),
        )
        .await;
        let page = scan(store, n, t, p, None, 10).await;
        assert_page(RULE, &page, &["c".to_string()], None);
    }

    delete(store, key(ns, "t", "p", "c"), 2).await;
    expect(RULE, store, key(ns, "t", "p", "c"), None).await;
    for &(n, t, p) in places.iter().filter(|place| **place != (ns, "t", "p")) {
        let expected = format!("{n}/{t}/{p}");
        expect(
            RULE,
            store,
            key(n, t, p, "c"),
            Some((expected.as_bytes(), 1)),
        )
        .await;
    }
}

async fn concurrent_writes_keep_the_newest<S: ReadStore>(store: &S, ns: &str) {
    const RULE: &str = "concurrent writes keep the newest";
    let cell = key(ns, "concurrent", "p", "c");
    // 41 is prime, so this is 1..=40 shuffled.
    let timestamps: Vec<i64> = (1..=40).map(|i| (i * 17) % 41).collect();
    let values: Vec<String> = timestamps.iter().map(|ts| format!("v{ts:02}")).collect();
    let writes = timestamps
        .iter()
        .zip(&values)
        .map(|(&ts, value)| store.put(cell, value.as_bytes(), ts));
    for result in join_all(writes).await {
        if let Err(e) = result {
            panic!("conformance [{RULE}]: a concurrent put failed: {e}");
        }
    }
    expect(RULE, store, cell, Some((b"v40", 40))).await;

    let cells: Vec<String> = (0..40).map(|i| format!("c{i:02}")).collect();
    let writes = cells
        .iter()
        .map(|ck| store.put(key(ns, "concurrent", "many", ck), ck.as_bytes(), 1));
    for result in join_all(writes).await {
        if let Err(e) = result {
            panic!("conformance [{RULE}]: a concurrent put failed: {e}");
        }
    }
    let page = scan(store, ns, "concurrent", "many", None, 100).await;
    assert_page(RULE, &page, &cells, None);
}

async fn many_writes_follow_the_rule_one_by_one<S: ReadStore>(store: &S, ns: &str, other: &str) {
    const RULE: &str = "write_many: every write follows last-write-wins as put and delete do";
    let older = key(ns, "many", "p", "older");
    let newer = key(ns, "many", "p", "newer");
    let deleted = key(ns, "many", "p", "deleted");
    let twice = key(ns, "many", "p", "twice");
    let tie = key(ns, "many", "p", "tie");
    let elsewhere = key(other, "many", "q", "elsewhere");
    for cell in [older, newer, deleted] {
        put(store, cell, b"before", 5).await;
    }
    let write = |key, value, ts| CellWrite { key, value, ts };
    let writes = [
        write(older, Some(&b"stale"[..]), 4),
        write(newer, Some(&b"after"[..]), 6),
        write(deleted, None, 6),
        write(twice, Some(&b"second"[..]), 8),
        write(tie, Some(&b"a"[..]), 3),
        write(elsewhere, Some(&b"other namespace"[..]), 1),
        // The same cells again, in one call: the rule decides as if they came one by one.
        write(twice, Some(&b"first"[..]), 7),
        write(tie, Some(&b"c"[..]), 3),
    ];
    if let Err(e) = store.write_many(&writes).await {
        panic!("conformance [{RULE}]: write_many failed: {e}");
    }
    expect(RULE, store, older, Some((b"before", 5))).await;
    expect(RULE, store, newer, Some((b"after", 6))).await;
    expect(RULE, store, deleted, None).await;
    expect(RULE, store, twice, Some((b"second", 8))).await;
    expect(RULE, store, tie, Some((b"c", 3))).await;
    expect(RULE, store, elsewhere, Some((b"other namespace", 1))).await;
    // Applying them again changes nothing.
    if let Err(e) = store.write_many(&writes).await {
        panic!("conformance [{RULE}]: write_many failed the second time: {e}");
    }
    expect(RULE, store, twice, Some((b"second", 8))).await;
    expect(RULE, store, deleted, None).await;
    let empty: [CellWrite<'_>; 0] = [];
    if let Err(e) = store.write_many(&empty).await {
        panic!("conformance [{RULE}]: write_many of nothing failed: {e}");
    }
}

async fn namespace_scans_see_every_live_cell_once<S: ReadStore>(store: &S, ns: &str, other: &str) {
    drop_namespace(store, ns).await;
    let mut written = std::collections::BTreeSet::new();
    for table in ["t_one", "t_two"] {
        for partition in ["p", "p\0q", "pp"] {
            for clustering in ["", "a", "b"] {
                let key = CellKey { namespace: ns, table, partition, clustering };
                put(store, key, format!("{table}/{partition}/{clustering}").as_bytes(), 5).await;
                written.insert((table.to_string(), partition.to_string(), clustering.to_string()));
            }
        }
    }
    let gone = CellKey { namespace: ns, table: "t_one", partition: "p", clustering: "a" };
    delete(store, gone, 6).await;
    written.remove(&("t_one".to_string(), "p".to_string(), "a".to_string()));
    put(store, CellKey { namespace: other, table: "t_one", partition: "p", clustering: "z" }, b"elsewhere", 1).await;

    let mut seen = Vec::new();
    let mut cursor: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_namespace(ns, cursor.as_deref(), 4).await.expect("conformance: namespace scan");
        assert!(page.cells.len() <= 8, "conformance: a namespace page stays near its limit");
        for stored in page.cells {
            let expected = format!("{}/{}/{}", stored.table, stored.partition, stored.cell.clustering_key);
            assert_eq!(stored.cell.value, expected.as_bytes(), "conformance: a scanned cell keeps its value");
            seen.push((stored.table, stored.partition, stored.cell.clustering_key));
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let unique: std::collections::BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "conformance: a namespace scan returns each cell once");
    assert_eq!(unique, written, "conformance: a namespace scan returns every live cell of that namespace only");
    let empty = store.scan_namespace("never_written_ns", None, 10).await.expect("conformance: scan of an empty namespace");
    assert!(empty.cells.is_empty() && empty.next.is_none(), "conformance: an unknown namespace scans empty");
    drop_namespace(store, ns).await;
}

async fn drop_namespace_empties_only_that_namespace<S: ReadStore>(
    store: &S,
    ns: &str,
    other: &str,
) {
    const RULE: &str = "drop_namespace empties one namespace only";
    let cell = key(ns, "dropped", "p", "c");
    let kept = key(other, "dropped", "p", "c");
    put(store, cell, b"old", 100).await;
    put(store, kept, b"kept", 100).await;

    drop_namespace(store, ns).await;
    expect(RULE, store, cell, None).await;
    expect(RULE, store, key(ns, "round_trip", "p1", "c1"), None).await;
    let page = scan(store, ns, "scan", "p", None, 10).await;
    assert_page(RULE, &page, &[], None);
    expect(RULE, store, kept, Some((b"kept", 100))).await;
    expect(
        RULE,
        store,
        key(other, "t", "p", "c"),
        Some((format!("{other}/t/p").as_bytes(), 1)),
    )
    .await;

    // A dropped namespace can be used again, and forgets its old timestamps and tombstones.
    put(store, cell, b"new", 1).await;
    expect(RULE, store, cell, Some((b"new", 1))).await;
    let resurrect = key(ns, "resurrect", "p", "c");
    put(store, resurrect, b"again", 1).await;
    expect(RULE, store, resurrect, Some((b"again", 1))).await;

    // Dropping twice, or a namespace that never existed, is fine.
    drop_namespace(store, ns).await;
    drop_namespace(store, ns).await;
    expect(RULE, store, cell, None).await;
}

async fn invalid_names_are_rejected<S: ReadStore>(store: &S, ns: &str) {
    const RULE: &str = "invalid namespace and table names are rejected";
    let too_long = "x".repeat(41);
    let bad_names = [
        "",
        "Upper",
        "has-dash",
        "has space",
        "dot.ted",
        "semi;colon",
        "\u{fc}mlaut",
        too_long.as_str(),
    ];
    for bad in bad_names {
        for (what, cell) in [
            ("namespace", key(bad, "t", "p", "c")),
            ("table", key(ns, bad, "p", "c")),
        ] {
            let context = format!("conformance [{RULE}]: {what} {bad:?}");
            assert_invalid(&context, "put", store.put(cell, b"v", 1).await);
            assert_invalid(&context, "delete", store.delete(cell, 1).await);
            assert_invalid(&context, "get", store.get(cell).await);
            assert_invalid(
                &context,
                "scan",
                store.scan(cell.namespace, cell.table, "p", None, 10).await,
            );
        }
        assert_invalid(
            &format!("conformance [{RULE}]: namespace {bad:?}"),
            "drop_namespace",
            store.drop_namespace(bad).await,
        );
    }
    // Partition and clustering keys are data: anything goes.
    let anything = key(ns, "t", "Any thing; -- \u{fc}", "Also \"this\"");
    put(store, anything, b"ok", 1).await;
    expect(RULE, store, anything, Some((b"ok", 1))).await;
}

fn key<'a>(
    namespace: &'a str,
    table: &'a str,
    partition: &'a str,
    clustering: &'a str,
) -> CellKey<'a> {
    CellKey {
        namespace,
        table,
        partition,
        clustering,
    }
}

async fn put<S: ReadStore>(store: &S, key: CellKey<'_>, value: &[u8], ts: i64) {
    if let Err(e) = store.put(key, value, ts).await {
        panic!("conformance: put {key:?} at ts {ts} failed: {e}");
    }
}

async fn delete<S: ReadStore>(store: &S, key: CellKey<'_>, ts: i64) {
    if let Err(e) = store.delete(key, ts).await {
        panic!("conformance: delete {key:?} at ts {ts} failed: {e}");
    }
}

async fn scan<S: ReadStore>(
    store: &S,
    namespace: &str,
    table: &str,
    partition: &str,
    after: Option<&str>,
    limit: usize,
) -> Page {
    match store.scan(namespace, table, partition, after, limit).await {
        Ok(page) => page,
        Err(e) => panic!(
            "conformance: scan {namespace}.{table} {partition:?} after {after:?} failed: {e}"
        ),
    }
}

async fn drop_namespace<S: ReadStore>(store: &S, namespace: &str) {
    if let Err(e) = store.drop_namespace(namespace).await {
        panic!("conformance: drop_namespace {namespace:?} failed: {e}");
    }
}

/// Reads `key` and checks it holds `expected` as `(value, write_ts)`, or nothing.
async fn expect<S: ReadStore>(
    rule: &str,
    store: &S,
    key: CellKey<'_>,
    expected: Option<(&[u8], i64)>,
) {
    let got = match store.get(key).await {
        Ok(got) => got,
        Err(e) => panic!("conformance [{rule}]: get {key:?} failed: {e}"),
    };
    let expected = expected.map(|(value, write_ts)| Cell {
        clustering_key: key.clustering.to_string(),
        value: value.to_vec(),
        write_ts,
    });
    assert!(
        got == expected,
        "conformance [{rule}]: {key:?} should hold {} but holds {}",
        show(expected.as_ref()),
        show(got.as_ref())
    );
}

fn assert_page(rule: &str, page: &Page, clustering_keys: &[String], next: Option<&str>) {
    let got: Vec<&str> = page
        .cells
        .iter()
        .map(|cell| cell.clustering_key.as_str())
        .collect();
    assert_eq!(
        got, clustering_keys,
        "conformance [{rule}]: wrong cells in a page"
    );
    assert_eq!(
        page.next.as_deref(),
        next,
        "conformance [{rule}]: wrong `next` after {got:?}"
    );
}

fn assert_invalid<T: std::fmt::Debug>(
    context: &str,
    operation: &str,
    result: Result<T, StoreError>,
) {
    assert!(
        matches!(result, Err(StoreError::InvalidName(_))),
        "{context}: {operation} should fail with InvalidName, got {result:?}"
    );
}

fn show(cell: Option<&Cell>) -> String {
    match cell {
        None => "nothing".to_string(),
        Some(cell) => format!(
            "{:?} at ts {}",
            String::from_utf8_lossy(&cell.value),
            cell.write_ts
        ),
    }
}
