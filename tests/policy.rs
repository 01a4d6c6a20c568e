//! Policy by type and by class, end to end through a real mount, clamd and S3 server:
//! allow and deny lists by detected type and extension, each class's size limit, and each
//! class's route (prefix and storage class).

mod common;

use common::{Options, Stack};

/// A card number that passes Luhn and an issuer's range: one makes a file personal.
const CARD: &str = "name,card\nAda,4111 1111 1111 1111\n";

#[test]
fn type_lists_and_class_size_limits_reject_naming_the_rule() {
    let stack = Stack::with(Options {
        policy_extra: "denied-types = [\"elf\"]\ndenied-extensions = [\"iso\"]",
        config_tail: "[class.personal]\nmax-file-size = \"1KiB\"\n",
        ..Options::default()
    });
    let elf = std::fs::read("/bin/true").expect("an ELF executable");
    stack.put_file("tool", &elf);
    stack.put_file("disk.iso", b"not really a disk image\n");
    stack.put_file("customers.csv", CARD.repeat(100).as_bytes());
    stack.put_file("one.csv", CARD.as_bytes());
    stack.put_file("notes.txt", "general words ".repeat(300).as_bytes());

    let rejected = [
        ("tool", "type \"elf\" is in policy.denied-types"),
        (
            "disk.iso",
            "extension \".iso\" is in policy.denied-extensions",
        ),
        (
            "customers.csv",
            "size 3.3 KiB is over class.personal.max-file-size (1 KiB)",
        ),
    ];
    for (name, reason) in rejected {
        let record = stack.wait_audit(name);
        assert_eq!(record["outcome"], "rejected", "{name}: {record}");
        assert_eq!(record["reason"], reason, "{name}: {record}");
        assert!(record["object"].is_null(), "{name}: {record}");
    }
    // The class limit is checked after classify, so the record says which class it was.
    assert_eq!(
        stack.wait_audit("customers.csv")["classification"],
        "personal"
    );
    // Under its class's limit, or of a class without one, a file goes through.
    for (name, class) in [("one.csv", "personal"), ("notes.txt", "general")] {
        let record = stack.wait_audit(name);
        assert_eq!(record["outcome"], "uploaded", "{name}: {record}");
        assert_eq!(record["classification"], class, "{name}: {record}");
    }
    assert_eq!(stack.objects().len(), 2);
    assert_eq!(
        stack.metric("backupfs_files_total{outcome=\"rejected\"}"),
        3.0
    );
    assert!(stack.log_file().contains("class.personal.max-file-size"));
}

/// The route this host gives personal files in the tests below.
const PERSONAL_ROUTE: &str =
    "[class.personal]\nprefix = \"personal\"\nstorage-class = \"REDUCED_REDUNDANCY\"\n";

/// The plaintext lines of every catalog file of this host, read with stock gpg and zstd.
fn catalog_lines(stack: &Stack) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for key in stack.keys(&format!("{}/catalog/", common::PREFIX)) {
        let plain = stack.restore_with_stock_tools(&key);
        for line in String::from_utf8(plain).unwrap().lines() {
            out.push(serde_json::from_str(line).unwrap());
        }
    }
    out
}

#[test]
fn a_personal_file_goes_under_its_route_in_its_storage_class_and_restores() {
    let stack = Stack::with(Options {
        also_allowed: &["s3://backups/personal"],
        config_tail: PERSONAL_ROUTE,
        record_s3: true,
        ..Options::default()
    });
    stack.put_file("cards.csv", CARD.as_bytes());
    stack.put_file("notes.txt", b"buy milk\n");

    let card = stack.wait_audit("cards.csv");
    assert_eq!(card["outcome"], "uploaded", "{card}");
    assert_eq!(card["classification"], "personal", "{card}");
    let card_key = card["object"].as_str().unwrap().to_string();
    assert!(card_key.starts_with("personal/data/"), "{card}");
    assert_eq!(
        card["destination"].as_str().unwrap(),
        format!("s3://backups/{card_key}")
    );
    assert_eq!(
        card["route"],
        serde_json::json!({"prefix": "personal", "storage_class": "REDUCED_REDUNDANCY"})
    );
    let notes = stack.wait_audit("notes.txt");
    assert_eq!(notes["outcome"], "uploaded", "{notes}");
    let notes_key = notes["object"].as_str().unwrap().to_string();
    assert!(notes_key.starts_with("host-a/data/"), "{notes}");
    assert_eq!(notes["route"], serde_json::json!({"prefix": "host-a"}));

    // What the S3 server holds, listed and read over S3.
    assert_eq!(stack.keys("personal/"), std::slice::from_ref(&card_key));
    assert_eq!(stack.objects(), std::slice::from_ref(&notes_key));
    assert_eq!(stack.restore_with_stock_tools(&card_key), CARD.as_bytes());
    // The storage class went with the PutObject of the personal object, and none with the
    // general one (the test server accepts the header but does not report it back).
    let requests = stack.recorder.as_ref().unwrap().requests();
    let put = |key: &str| {
        requests
            .iter()
            .find(|r| r.starts_with(&format!("put /backups/{key}")))
            .unwrap_or_else(|| panic!("no PutObject of {key} in {requests:#?}"))
            .clone()
    };
    assert!(
        put(&card_key).contains("\r\nx-amz-storage-class: reduced_redundancy"),
        "{}",
        put(&card_key)
    );
    assert!(!put(&notes_key).contains("x-amz-storage-class"));

    // The catalog records the route, in the state database and in the destination.
    stack.wait_published(2);
    let (prefix, class): (String, Option<String>) = stack
        .db()
        .query_row(
            "SELECT prefix, storage_class FROM catalog WHERE path = ?1",
            [b"cards.csv".as_slice()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (prefix.as_str(), class.as_deref()),
        ("personal", Some("REDUCED_REDUNDANCY"))
    );
    let lines = catalog_lines(&stack);
    let line = |path: &str| {
        lines
            .iter()
            .find(|l| l["path"] == path)
            .unwrap_or_else(|| panic!("no catalog line for {path}: {lines:?}"))
            .clone()
    };
    assert_eq!(line("cards.csv")["route"], card["route"]);
    assert_eq!(line("cards.csv")["object"], card_key.as_str());
    assert_eq!(line("notes.txt")["route"], notes["route"]);

    // Restore and verify read the routed object like any other.
    let to = stack.dir.path().join("restored");
    let (ok, out, err) = stack.cli(&["restore", "--to", to.to_str().unwrap(), "/"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        std::fs::read(to.join("cards.csv")).unwrap(),
        CARD.as_bytes()
    );
    assert_eq!(std::fs::read(to.join("notes.txt")).unwrap(), b"buy milk\n");
    let (ok, out, err) = stack.cli(&["verify", "--all"]);
    assert!(ok && out.contains("checked 2 objects"), "{out}\n{err}");
}

#[test]
fn a_new_route_wins_over_a_copy_stored_elsewhere_before() {
    let mut stack = Stack::with(Options {
        also_allowed: &["s3://backups/personal"],
        ..Options::default()
    });
    stack.put_file("cards.csv", CARD.as_bytes());
    let before = stack.wait_audit("cards.csv");
    let old_key = before["object"].as_str().unwrap().to_string();
    assert!(old_key.starts_with("host-a/data/"), "{before}");
    stack.wait_published(1);

    // The operator routes personal files elsewhere and remounts.
    stack.stop_daemon();
    let mut config = std::fs::read_to_string(&stack.config).unwrap();
    config.push_str(PERSONAL_ROUTE);
    std::fs::write(&stack.config, config).unwrap();
    stack.mount();

    // The same content again is stored anew under its route, not pointed at the copy under
    // the old prefix; a third copy is then a duplicate of the routed one.
    stack.put_file("copy.csv", CARD.as_bytes());
    let copy = stack.wait_audit("copy.csv");
    assert_eq!(copy["outcome"], "uploaded", "{copy}");
    let new_key = copy["object"].as_str().unwrap().to_string();
    assert!(new_key.starts_with("personal/data/"), "{copy}");
    stack.put_file("again.csv", CARD.as_bytes());
    let again = stack.wait_audit("again.csv");
    assert_eq!(again["outcome"], "duplicate", "{again}");
    assert_eq!(again["object"], new_key.as_str());
    assert_eq!(
        again["route"],
        serde_json::json!({"prefix": "personal", "storage_class": "REDUCED_REDUNDANCY"})
    );
    // The old copy stays for the version that points at it, until a prune drops it.
    assert_eq!(stack.objects(), [old_key]);
    assert_eq!(stack.keys("personal/"), [new_key]);
}

#[test]
fn a_route_outside_allowed_is_refused_by_gate_2() {
    let stack = Stack::with(Options {
        config_tail: "[class.sensitive]\nprefix = \"vault\"\n",
        ..Options::default()
    });
    stack.put_file("contract.txt", b"This agreement is confidential.\n");
    stack.put_file("notes.txt", b"buy milk\n");
    let record = stack.wait_audit("contract.txt");
    assert_eq!(record["outcome"], "failed", "{record}");
    assert_eq!(record["classification"], "sensitive", "{record}");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gate2: destination s3://backups/vault/data/")
            && reason.contains("is outside destination.allowed [\"s3://backups/host-a\"]")
            && reason.ends_with("class.sensitive.prefix = \"vault\" routes it there"),
        "{reason}"
    );
    assert!(record["object"].is_null(), "{record}");
    assert_eq!(stack.wait_audit("notes.txt")["outcome"], "uploaded");
    assert!(stack.keys("vault/").is_empty());
    assert_eq!(stack.objects().len(), 1);
    // Start-up said so already.
    assert!(
        stack.log_file().contains(
            "class.sensitive.prefix routes sensitive files to s3://backups/vault, outside \
             destination.allowed"
        ),
        "{}",
        stack.log_file()
    );
    let (ok, _, err) = stack.cli(&["check-config"]);
    assert!(
        ok && err.contains("warning: class.sensitive.prefix"),
        "{err}"
    );
}
