//! The control API end to end against a daemon on a namespace lab: each
//! error kind with its HTTP status (raw HTTP on the socket) and the CLI's
//! exit code, a large block list streamed in order, and `block show`.

mod common;

use std::path::Path;

use common::{Daemon, TempFile, http, ironpost, start_on_lab};
use ironpost_lab::{Lab, kernel_tests_enabled};
use serde_json::Value;

/// The error kind of a refused raw request.
fn kind(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let (status, body) = http(socket, method, path, body);
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    (status, v["kind"].as_str().unwrap_or("?").to_owned())
}

fn code(d: &Daemon, args: &[&str]) -> (Option<i32>, String) {
    let o = d.ctl(args);
    (o.status.code(), common::stderr(&o))
}

#[test]
fn each_error_kind_has_its_status_and_exit_code() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let (d, _cfg) = start_on_lab(
        &lab,
        "api-errors.toml",
        "[ebpf]\nblocklist_max_entries = 4\n\n[[ebpf.rules]]\nid = \"cfg-net\"\n\
         src = \"203.0.113.0/24\"\naction = \"drop\"\n",
    );
    let s = d.socket();
    // not_found: 404, exit 12.
    assert_eq!(
        kind(&s, "DELETE", "/v1/blocks", r#"{"prefixes":["192.0.2.1"]}"#),
        (404, "not_found".into())
    );
    let (c, err) = code(&d, &["block", "del", "192.0.2.1"]);
    assert_eq!(c, Some(12), "{err}");
    assert!(err.contains("not in the block list"), "{err}");
    // config_owned: 409, exit 13.
    assert_eq!(
        kind(
            &s,
            "DELETE",
            "/v1/blocks",
            r#"{"prefixes":["203.0.113.0/24"]}"#
        ),
        (409, "config_owned".into())
    );
    let (c, err) = code(&d, &["block", "add", "203.0.113.0/24"]);
    assert_eq!(c, Some(13), "{err}");
    assert!(err.contains("cfg-net"), "{err}");
    // invalid: 422, exit 11 (every address without --force; a TTL out of
    // range past the CLI; a show of something that is not an address).
    assert_eq!(
        kind(&s, "POST", "/v1/blocks", r#"{"prefixes":["0.0.0.0/0"]}"#),
        (422, "invalid".into())
    );
    let (c, err) = code(&d, &["block", "add", "::/0"]);
    assert_eq!(c, Some(11), "{err}");
    assert_eq!(
        kind(&s, "GET", "/v1/blocks/show?addr=10.0.0.0/8", ""),
        (422, "invalid".into())
    );
    // capacity: 507, exit 14 (4 entries, one taken by the config).
    let (c, err) = code(
        &d,
        &[
            "block", "add", "10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4",
        ],
    );
    assert_eq!(c, Some(14), "{err}");
    assert_eq!(
        kind(
            &s,
            "POST",
            "/v1/blocks",
            r#"{"prefixes":["10.0.0.1","10.0.0.2","10.0.0.3","10.0.0.4"]}"#
        ),
        (507, "capacity".into())
    );
    // bad_request: 400, no CLI path reaches it (the CLI checks first).
    assert_eq!(
        kind(&s, "POST", "/v1/blocks", r#"{"prefixes":"x"}"#),
        (400, "bad_request".into())
    );
    assert_eq!(
        kind(&s, "GET", "/v2/status", ""),
        (400, "bad_request".into())
    );
    // Nothing of the above changed anything.
    let list = d.json(&["block", "list"]);
    assert_eq!(list["entries"].as_array().unwrap().len(), 1, "{list}");
    // The API answers plain requests too.
    let (status, body) = http(&s, "GET", "/v1/status", "");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    // No daemon: exit 3.
    let o = ironpost(&["--socket", "/nonexistent/ironpost.sock", "status"]);
    assert_eq!(o.status.code(), Some(3), "{}", common::stderr(&o));
    // Usage: exit 2.
    let o = ironpost(&["block", "add"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn a_large_block_list_streams_in_order_and_whole() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(1).unwrap();
    let n = 50_000u32;
    let (d, _cfg) = start_on_lab(
        &lab,
        "api-list.toml",
        "[ebpf]\nblocklist_max_entries = 60000\n",
    );
    let mut text = String::new();
    for i in 0..n {
        text.push_str(&format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255));
    }
    text.push_str("2001:db8::/48\n");
    let file = TempFile::new("api-list.txt", &text);
    d.ok(&["block", "import", file.path()]);
    // NDJSON: one entry per line, every entry once, in key order (source
    // IPv4 before IPv6, addresses ascending), many pages' worth.
    let out = d.ok(&["block", "list", "--ndjson"]);
    let rows: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), n as usize + 1);
    let prefixes: Vec<String> = rows
        .iter()
        .map(|r| r["prefix"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(prefixes[0], "10.0.0.0");
    assert_eq!(prefixes[n as usize - 1], "10.0.195.79");
    assert_eq!(prefixes[n as usize], "2001:db8::/48");
    let unique: std::collections::HashSet<&String> = prefixes.iter().collect();
    assert_eq!(unique.len(), rows.len());
    // The table and the JSON document hold the same entries.
    let table = d.ok(&["block", "list"]);
    assert!(
        table.ends_with(&format!("{} entries, 0 port rules\n", n + 1)),
        "{}",
        &table[table.len() - 200..]
    );
    let doc = d.json(&["block", "list"]);
    assert_eq!(doc["entries"].as_array().unwrap().len(), n as usize + 1);
    // `| head` stops quietly.
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} --socket {} block list | head -3",
            env!("CARGO_BIN_EXE_ironpost"),
            d.socket().display()
        ))
        .output()
        .unwrap();
    assert!(o.status.success());
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 3);
    assert!(
        o.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    d.ok(&["status"]);
}

#[test]
fn block_show_says_which_entry_decides_and_its_hits() {
    if !kernel_tests_enabled() {
        return;
    }
    let lab = Lab::new(2).unwrap();
    let (peer, other) = (lab.peer_addr(0), lab.peer_addr(1));
    let o = peer.octets();
    let net16 = format!("{}.{}.0.0/16", o[0], o[1]);
    let (d, _cfg) = start_on_lab(
        &lab,
        "api-show.toml",
        &format!("[[ebpf.rules]]\nid = \"lab-net\"\nsrc = \"{net16}\"\naction = \"monitor\"\n"),
    );
    d.ok(&["block", "add", &peer.to_string(), "--reason", "test"]);
    assert_eq!(lab.ping(peer, 2).unwrap(), 0);
    let v = d.json(&["block", "show", &peer.to_string()]);
    let src = v["source"].as_array().unwrap();
    assert_eq!(src.len(), 2, "{v}");
    assert_eq!(src[0]["prefix"], peer.to_string(), "the host entry decides");
    assert!(src[0]["packets"].as_u64().unwrap() >= 2, "{v}");
    assert_eq!(src[1]["prefix"], net16);
    assert_eq!(src[1]["id"], "lab-net");
    assert!(v["verdict"].as_str().unwrap().starts_with("drop by"), "{v}");
    assert!(v["allowed_by"].is_null());
    // The other peer falls to the /16 only.
    let v = d.json(&["block", "show", &other.to_string()]);
    assert_eq!(v["source"].as_array().unwrap().len(), 1, "{v}");
    assert!(
        v["verdict"].as_str().unwrap().starts_with("monitor by"),
        "{v}"
    );
    // An allow entry wins, and show says so.
    d.ok(&["allow", "add", &peer.to_string()]);
    let table = d.ok(&["block", "show", &peer.to_string()]);
    assert!(table.contains("passed: allow-list entry"), "{table}");
    assert_eq!(lab.ping(peer, 2).unwrap(), 2);
    // An address nothing matches.
    let v = d.json(&["block", "show", "2001:db8::1"]);
    assert!(v["source"].as_array().unwrap().is_empty());
    assert!(
        v["verdict"]
            .as_str()
            .unwrap()
            .contains("not in the block list")
    );
}
