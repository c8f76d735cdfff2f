//! The compatibility gate: every current `.avsc` under `avro/<topic>/` must read data written
//! with each of its registered versions under `avro/registered/<topic>/<Name>.v<N>.avsc`.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use schemas::compatibility::check_backward;

fn avro_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("avro")
}

/// `(topic, name)` → path of the current schema.
fn current_schemas() -> BTreeMap<(String, String), PathBuf> {
    let mut found = BTreeMap::new();
    for topic_dir in fs::read_dir(avro_dir()).expect("avro/ is readable") {
        let topic_dir = topic_dir.unwrap().path();
        let topic = topic_dir.file_name().unwrap().to_string_lossy().to_string();
        if !topic_dir.is_dir() || topic == "registered" {
            continue;
        }
        for file in fs::read_dir(&topic_dir).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "avsc") {
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                found.insert((topic.clone(), name), path);
            }
        }
    }
    found
}

/// `(topic, name)` → registered versions `(N, path)`, oldest first.
fn registered_schemas() -> BTreeMap<(String, String), Vec<(u32, PathBuf)>> {
    let mut found: BTreeMap<(String, String), Vec<(u32, PathBuf)>> = BTreeMap::new();
    let root = avro_dir().join("registered");
    let Ok(topics) = fs::read_dir(&root) else { return found };
    for topic_dir in topics {
        let topic_dir = topic_dir.unwrap().path();
        let topic = topic_dir.file_name().unwrap().to_string_lossy().to_string();
        for file in fs::read_dir(&topic_dir).unwrap() {
            let path = file.unwrap().path();
            let file_name = path.file_name().unwrap().to_string_lossy().to_string();
            let Some(stem) = file_name.strip_suffix(".avsc") else { continue };
            let parsed = stem
                .rsplit_once(".v")
                .and_then(|(name, n)| n.parse::<u32>().ok().map(|n| (name.to_string(), n)));
            let Some((name, n)) = parsed else {
                panic!("{} is not named <Name>.v<N>.avsc", path.display());
            };
            found.entry((topic.clone(), name)).or_default().push((n, path));
        }
    }
    for versions in found.values_mut() {
        versions.sort();
    }
    found
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

#[test]
fn every_current_schema_reads_all_its_registered_versions() {
    let current = current_schemas();
    let registered = registered_schemas();
    assert!(!current.is_empty(), "no .avsc found under {}", avro_dir().display());
    let mut failures = Vec::new();
    for ((topic, name), versions) in &registered {
        let Some(current_path) = current.get(&(topic.clone(), name.clone())) else {
            failures.push(format!(
                "{topic}/{name} is registered but avro/{topic}/{name}.avsc is gone: events already \
                 in the log could no longer be read"
            ));
            continue;
        };
        let current_text = read(current_path);
        for (_, previous_path) in versions {
            if let Err(reason) = check_backward(&current_text, &[read(previous_path)]) {
                failures.push(format!(
                    "{} cannot read data written with {}: {reason}",
                    current_path.display(),
                    previous_path.display()
                ));
            }
        }
    }
    // Current schemas without a registered version are new event types: nothing to keep readable,
    // but they must at least parse.
    for ((topic, name), path) in &current {
        if !registered.contains_key(&(topic.clone(), name.clone()))
            && let Err(reason) = check_backward(&read(path), &[])
        {
            failures.push(format!("{}: {reason}", path.display()));
        }
    }
    assert!(failures.is_empty(), "compatibility gate failed:\n  {}", failures.join("\n  "));
}

#[test]
fn the_gate_rejects_a_new_field_without_default() {
    let path = avro_dir().join("tickets").join("TicketCreated.avsc");
    let mut schema: serde_json::Value = serde_json::from_str(&read(&path)).unwrap();
    schema["fields"]
        .as_array_mut()
        .expect("a record schema")
        .push(serde_json::json!({"name": "venue", "type": "string"}));
    let edited = schema.to_string();
    let previous: Vec<String> = registered_schemas()
        [&("tickets".to_string(), "TicketCreated".to_string())]
        .iter()
        .map(|(_, path)| read(path))
        .collect();

    let error =
        check_backward(&edited, &previous).expect_err("a field without default breaks BACKWARD");
    assert!(error.contains("venue"), "the reason names the field: {error}");

    // The same field with a default is a compatible edit.
    schema["fields"].as_array_mut().unwrap().last_mut().unwrap()["default"] = serde_json::json!("");
    assert_eq!(check_backward(&schema.to_string(), &previous), Ok(()));
}
