use super::*;

const MINIMAL: &str = r#"
    [mount]
    source = "/srv/data"
    mountpoint = "/mnt/drop"
    [encrypt]
    passphrase-file = "/etc/backupfs/passphrase"
    [destination]
    kind = "s3"
    bucket = "backups"
    prefix = "host-a"
    allowed = ["s3://backups/host-a"]
"#;

fn load(text: &str) -> Result<Settings, ConfigError> {
    Config::from_toml(text, Path::new("/etc/backupfs/config.toml"))
}

#[test]
fn example_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/backupfs.example.toml");
    let settings = Config::load(&path).expect("the shipped example must load");
    let raw = &settings.raw;
    assert_eq!(raw.pipeline.workers, 2);
    assert_eq!(raw.policy.max_file_size, ByteSize(5 << 30));
    assert!(settings.blacklist.is_match("dir/setup.exe"));
    assert!(settings.blacklist.is_match("setup.exe"));
    assert!(!settings.blacklist.is_match("setup.txt"));
    assert_eq!(raw.destination.base_url(), "s3://backups/host-a");
    assert_eq!(raw.log.format, LogFormat::Text);
}

#[test]
fn minimal_config_gets_defaults_and_absolute_paths() {
    let s = load(MINIMAL).expect("minimal config loads");
    assert_eq!(s.raw.pipeline.workers, 2);
    assert_eq!(
        s.raw.log.file,
        Path::new("/etc/backupfs/logs/backup_pipeline.log")
    );
    assert_eq!(s.raw.log.format, LogFormat::Text);
    assert_eq!(s.clamd, ClamdAddress::Unix("/run/clamav/clamd.ctl".into()));
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9477".parse().unwrap()));
}

#[test]
fn log_format_can_be_json() {
    let s = load(&format!("{MINIMAL}[log]\nformat = \"json\"\n")).expect("json loads");
    assert_eq!(s.raw.log.format, LogFormat::Json);
}

#[test]
fn errors_name_the_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("[pipeline]\nworkers = 0\n", "", "pipeline.workers"),
        ("[pipeline]\nwrokers = 2\n", "", "wrokers"),
        (
            "[policy]\nmax-file-size = \"5 parsecs\"\n",
            "",
            "max-file-size",
        ),
        ("[scan]\nclamd = \"http://x\"\n", "", "scan.clamd"),
        ("[metrics]\nlisten = \"nowhere\"\n", "", "metrics.listen"),
        ("[policy]\nblacklist = [\"a[\"]\n", "", "policy.blacklist"),
        ("", "zstd-level = 99\n", "encrypt.zstd-level"),
        ("[scan]\nclamd = \"unix:\"\n", "", "scan.clamd"),
        (
            "[policy]\nmax-file-size = \"0\"\n",
            "",
            "policy.max-file-size",
        ),
        ("[policy]\nmax-file-size = -5\n", "", "max-file-size"),
        ("[state]\ndir = \"/srv/data/.state\"\n", "", "state.dir"),
        ("[log]\nformat = \"xml\"\n", "", "format"),
        (
            "[state]\nspool-dir = \"/mnt/drop/spool\"\n",
            "",
            "state.spool-dir",
        ),
    ];
    for (extra, encrypt_extra, key) in cases {
        let text = MINIMAL.replace(
            "passphrase-file = \"/etc/backupfs/passphrase\"",
            &format!("passphrase-file = \"/etc/backupfs/passphrase\"\n{encrypt_extra}"),
        ) + extra;
        let err = load(&text).expect_err(key).to_string();
        assert!(err.contains(key), "error for {key} does not name it: {err}");
        assert!(err.contains("/etc/backupfs/config.toml"), "{err}");
    }
}

#[test]
fn destination_needs_allowed_and_bucket() {
    let no_allowed = MINIMAL.replace("allowed = [\"s3://backups/host-a\"]", "allowed = []");
    let err = load(&no_allowed).unwrap_err().to_string();
    assert!(err.contains("destination.allowed"), "{err}");
    let no_bucket = MINIMAL.replace("bucket = \"backups\"", "");
    let err = load(&no_bucket).unwrap_err().to_string();
    assert!(err.contains("destination.bucket"), "{err}");
    let dir = MINIMAL.replace("kind = \"s3\"", "kind = \"dir\"");
    let err = load(&dir).unwrap_err().to_string();
    assert!(err.contains("destination.path"), "{err}");
}

#[test]
fn nested_mount_and_source_are_refused() {
    let inner = MINIMAL.replace(
        "mountpoint = \"/mnt/drop\"",
        "mountpoint = \"/srv/data/inner\"",
    );
    let err = load(&inner).unwrap_err().to_string();
    assert!(
        err.contains("mount.mountpoint") && err.contains("inside"),
        "{err}"
    );
    let outer = MINIMAL.replace("source = \"/srv/data\"", "source = \"/mnt/drop/src\"");
    let err = load(&outer).unwrap_err().to_string();
    assert!(err.contains("mount.source"), "{err}");
    let bad_url = MINIMAL.replace(
        "prefix = \"host-a\"",
        "prefix = \"host-a\"\nendpoint = \"not a url\"",
    );
    let err = load(&bad_url).unwrap_err().to_string();
    assert!(err.contains("destination.endpoint"), "{err}");
}

#[test]
fn relative_passphrase_file_resolves_against_the_config_directory() {
    let text = MINIMAL.replace("/etc/backupfs/passphrase", "secret/pass");
    let s = load(&text).unwrap();
    assert_eq!(
        s.raw.encrypt.passphrase_file.as_deref(),
        Some(Path::new("/etc/backupfs/secret/pass"))
    );
}

#[test]
fn bare_config_file_name_resolves_against_the_working_directory() {
    let s = Config::from_toml(MINIMAL, Path::new("config.toml")).unwrap();
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(s.raw.state.dir, Path::new("/var/lib/backupfs"));
    assert_eq!(s.raw.log.file, cwd.join("logs/backup_pipeline.log"));
}

#[test]
fn blacklist_ignores_case_and_extensions_lose_their_dot() {
    let text = MINIMAL.to_string()
        + "[policy]\nblacklist = [\"**/*.exe\"]\nallowed-extensions = [\".TXT\"]\n";
    let s = load(&text).unwrap();
    assert!(s.blacklist.is_match("dir/SETUP.EXE"));
    assert_eq!(s.raw.policy.allowed_extensions, ["txt"]);
}

#[test]
fn type_and_extension_lists_are_normalised_and_checked() {
    let text = MINIMAL.to_string()
        + "[policy]\ndenied-extensions = [\".ISO\", \"\"]\n\
           allowed-types = [\"PDF\", \" text\"]\ndenied-types = [\"elf\", \"pe\"]\n";
    let s = load(&text).unwrap();
    assert_eq!(s.raw.policy.denied_extensions, ["iso", ""]);
    assert_eq!(s.raw.policy.allowed_types, ["pdf", "text"]);
    assert_eq!(s.raw.policy.denied_types, ["elf", "pe"]);

    let cases = [
        (
            "denied-types = [\"exe\"]",
            "policy.denied-types",
            "unknown type \"exe\"; the types gate 1 tells are: elf, pe, macho",
        ),
        (
            "allowed-types = [\"pdf\", \"docx\"]",
            "policy.allowed-types",
            "unknown type \"docx\"",
        ),
        (
            "allowed-types = [\"pdf\"]\ndenied-types = [\"PDF\"]",
            "policy.denied-types",
            "\"pdf\" is in policy.allowed-types too",
        ),
        (
            "denied-extensions = [\"tar.gz\"]",
            "policy.denied-extensions",
            "only what follows the last dot",
        ),
        (
            "allowed-extensions = [\"a/b\"]",
            "policy.allowed-extensions",
            "not an extension",
        ),
        (
            "allowed-extensions = [\"txt\"]\ndenied-extensions = [\".TXT\"]",
            "policy.denied-extensions",
            "`txt` is in policy.allowed-extensions too",
        ),
        (
            "denied-types = \"elf\"",
            "policy.denied-types",
            "expected a sequence",
        ),
    ];
    for (lines, key, message) in cases {
        let err = load(&format!("{MINIMAL}[policy]\n{lines}\n"))
            .expect_err(lines)
            .to_string();
        assert!(
            err.contains(&format!("key `{key}`")) && err.contains(message),
            "{lines}: {err}"
        );
    }
}

#[test]
fn quarantine_inside_source_is_refused() {
    let text = MINIMAL.to_string()
        + "[log]\nfile = \"/l/a.log\"\naudit = \"/l/a.jsonl\"\nquarantine-dir = \"/srv/data/q\"\n";
    let err = load(&text).unwrap_err().to_string();
    assert!(err.contains("log.quarantine-dir"), "{err}");
}

#[test]
fn byte_sizes_parse() {
    let cases = [
        ("5GiB", Some(5u64 << 30)),
        ("64 MiB", Some(64 << 20)),
        ("10MB", Some(10_000_000)),
        ("1048576", Some(1 << 20)),
        ("1.5GiB", None),
        ("12 furlongs", None),
        ("", None),
    ];
    for (text, want) in cases {
        assert_eq!(text.parse::<ByteSize>().ok().map(|b| b.0), want, "{text}");
    }
}

#[test]
fn urls_join_with_one_slash() {
    assert_eq!(join_url("s3://b", "host-a"), "s3://b/host-a");
    assert_eq!(join_url("s3://b/", "/host-a/"), "s3://b/host-a");
    assert_eq!(join_url("s3://b", ""), "s3://b");
}

#[test]
fn credentials_file_is_for_s3_and_resolves_beside_the_config() {
    let s = load(&MINIMAL.replace(
        "kind = \"s3\"",
        "kind = \"s3\"\ncredentials-file = \"aws-credentials\"",
    ))
    .unwrap();
    assert_eq!(
        s.raw.destination.credentials_file.as_deref(),
        Some(Path::new("/etc/backupfs/aws-credentials"))
    );
    assert_eq!(s.raw.destination.profile, "default");
    let e = load(&MINIMAL.replace(
        "kind = \"s3\"\n    bucket = \"backups\"",
        "kind = \"dir\"\n    path = \"/backups\"\n    credentials-file = \"/k\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("destination.credentials-file"), "{e}");
}

#[test]
fn mount_dirs_may_come_from_the_command_line_instead() {
    let text = MINIMAL
        .replace("source = \"/srv/data\"", "")
        .replace("mountpoint = \"/mnt/drop\"", "");
    let mut s = load(&text).expect("a config for fstab leaves the mount dirs out");
    let bare = load(&text.replace("[mount]", "")).expect("or the whole [mount] table");
    assert_eq!(bare.raw.mount.threads, s.raw.mount.threads);
    let e = s
        .clone()
        .set_mount_dirs(None, None)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mount.source") && e.contains("command line"),
        "{e}"
    );
    let e = s
        .clone()
        .set_mount_dirs(
            Some(Path::new("/srv/data")),
            Some(Path::new("/srv/data/in")),
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("mount.mountpoint") && e.contains("inside"),
        "{e}"
    );
    s.set_mount_dirs(
        Some(Path::new("/srv/data")),
        Some(Path::new("/data/to-backup")),
    )
    .unwrap();
    assert_eq!(s.raw.mount.mountpoint, Path::new("/data/to-backup"));
    // The command line wins over the file.
    let mut s = load(MINIMAL).unwrap();
    s.set_mount_dirs(Some(Path::new("/srv/other")), None)
        .unwrap();
    assert_eq!(s.raw.mount.source, Path::new("/srv/other"));
    assert_eq!(s.raw.mount.mountpoint, Path::new("/mnt/drop"));
}

#[test]
fn passphrase_has_exactly_one_source() {
    let file = "passphrase-file = \"/etc/backupfs/passphrase\"";
    let credential = "passphrase-credential = \"backupfs-passphrase\"";
    let command = "passphrase-command = [\"pass\", \"show\", \"backupfs\"]";
    let cases: &[(&[&str], Option<&str>)] = &[
        (&[file], None),
        (&[credential], None),
        (&[command], None),
        (&[], Some("encrypt.passphrase-file")),
        (&[file, credential], Some("encrypt.passphrase-credential")),
        (&[file, command], Some("encrypt.passphrase-command")),
        (&[credential, command], Some("encrypt.passphrase-command")),
        (
            &[file, credential, command],
            Some("encrypt.passphrase-credential"),
        ),
        (
            &["passphrase-command = []"],
            Some("encrypt.passphrase-command"),
        ),
        (
            &["passphrase-command = [\"\"]"],
            Some("encrypt.passphrase-command"),
        ),
        (
            &["passphrase-command = \"pass show\""],
            Some("passphrase-command"),
        ),
        (
            &[command, "passphrase-command-timeout = \"0s\""],
            Some("encrypt.passphrase-command-timeout"),
        ),
    ];
    for (lines, key) in cases {
        let text = MINIMAL.replace(file, &lines.join("\n"));
        match (load(&text), key) {
            (Ok(_), None) => {}
            (Ok(_), Some(key)) => panic!("{lines:?} loaded; wanted an error naming {key}"),
            (Err(e), None) => panic!("{lines:?}: {e}"),
            (Err(e), Some(key)) => assert!(e.to_string().contains(key), "{lines:?}: {e}"),
        }
    }
}

#[test]
fn passphrase_command_program_resolves_like_a_path() {
    let cases = [
        ("pass", "pass"),
        ("/usr/bin/pass", "/usr/bin/pass"),
        ("bin/get-passphrase", "/etc/backupfs/bin/get-passphrase"),
        ("./get-passphrase", "/etc/backupfs/./get-passphrase"),
    ];
    for (program, want) in cases {
        let text = MINIMAL.replace(
            "passphrase-file = \"/etc/backupfs/passphrase\"",
            &format!("passphrase-command = [\"{program}\", \"bin/arg\"]"),
        );
        let s = load(&text).unwrap();
        let argv = s.raw.encrypt.passphrase_command.as_deref().unwrap();
        assert_eq!(argv, [want, "bin/arg"], "arguments are left as written");
        assert_eq!(
            s.raw.encrypt.passphrase_command_timeout,
            std::time::Duration::from_secs(30)
        );
    }
}

#[test]
fn passphrase_comes_from_the_command() {
    let text = MINIMAL.replace(
        "passphrase-file = \"/etc/backupfs/passphrase\"",
        "passphrase-command = [\"printf\", \"%s\\n\", \"from a command\"]\n\
         passphrase-command-timeout = \"5s\"",
    );
    let s = load(&text).unwrap();
    assert_eq!(s.passphrase().unwrap(), b"from a command");
    assert!(s
        .raw
        .encrypt
        .passphrase_source()
        .starts_with("encrypt.passphrase-command [\"printf\""));
}

#[test]
fn personal_threshold_defaults_to_one_and_zero_is_refused() {
    assert_eq!(load(MINIMAL).unwrap().raw.classify.personal_threshold, 1);
    let e = load(&format!("{MINIMAL}\n[classify]\npersonal-threshold = 0\n"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("classify.personal-threshold"), "{e}");
}

#[test]
fn classes_set_size_limits_and_routes() {
    let text = format!(
        "{}{}",
        MINIMAL.replace(
            "allowed = [\"s3://backups/host-a\"]",
            "allowed = [\"s3://backups/host-a\", \"s3://backups/personal\"]\n\
             storage-class = \"onezone_ia\""
        ),
        "[class.personal]\nmax-file-size = \"10MiB\"\nprefix = \"personal/\"\n\
         storage-class = \"STANDARD_IA\"\n[class.sensitive]\nstorage-class = \"GLACIER_IR\"\n"
    );
    let s = load(&text).unwrap();
    use crate::pipeline::classify::Class;
    let sizes = s.raw.class.max_file_sizes();
    assert_eq!(sizes.get(Class::Personal), Some(10 << 20));
    assert_eq!(sizes.get(Class::General), None);
    let routes = s.raw.class.routes(&s.raw.destination);
    let route = |c| {
        let r = routes.get(c);
        (r.prefix.as_str(), r.storage_class.as_deref())
    };
    assert_eq!(route(Class::Personal), ("personal", Some("STANDARD_IA")));
    assert_eq!(route(Class::Sensitive), ("host-a", Some("GLACIER_IR")));
    assert_eq!(route(Class::General), ("host-a", Some("ONEZONE_IA")));
    assert_eq!(
        routes.routed_by(Class::Personal),
        Some("class.personal.prefix")
    );
    assert_eq!(routes.routed_by(Class::Sensitive), None);
    assert_eq!(s.raw.class.prefixes(), ["personal"]);
    assert!(
        s.allowed_warnings().is_empty(),
        "{:?}",
        s.allowed_warnings()
    );
    // Without classes, everything goes where it always went.
    let plain = load(MINIMAL).unwrap();
    let routes = plain.raw.class.routes(&plain.raw.destination);
    assert_eq!(routes.get(Class::Personal).prefix, "host-a");
    assert_eq!(routes.get(Class::Personal).storage_class, None);
    assert!(routes.own_prefix.is_empty());
}

#[test]
fn a_route_outside_allowed_is_warned_about_at_start() {
    let text = format!("{MINIMAL}[class.sensitive]\nprefix = \"vault\"\n");
    let s = load(&text).unwrap();
    let warnings = s.allowed_warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("class.sensitive.prefix routes sensitive files to s3://backups/vault")
            && warnings[0].contains("gate 2 will refuse"),
        "{warnings:?}"
    );
}

#[test]
fn class_errors_name_the_key() {
    let cases = [
        (
            "[class.secret]\nprefix = \"x\"",
            "unknown field `secret`",
            "expected one of `sensitive`, `personal`, `general`",
        ),
        (
            "[class.personal]\nstorage-class = \"GLACIER\"",
            "class.personal.storage-class",
            "cannot be read until they are restored",
        ),
        (
            "[class.general]\nstorage-class = \"FAST\"",
            "class.general.storage-class",
            "\"FAST\" is not an S3 storage class; use one of STANDARD, STANDARD_IA",
        ),
        (
            "[class.personal]\nprefix = \"/abs\"",
            "class.personal.prefix",
            "must be relative",
        ),
        (
            "[class.personal]\nprefix = \"a/../b\"",
            "class.personal.prefix",
            "must be relative",
        ),
        (
            "[class.personal]\nprefix = \"host-a/catalog/p\"",
            "class.personal.prefix",
            "is inside `host-a/catalog/`",
        ),
        (
            "[class.personal]\nprefix = \"host-a/data\"",
            "class.personal.prefix",
            "is inside `host-a/data/`",
        ),
        (
            "[class.personal]\nmax-file-size = 0",
            "class.personal.max-file-size",
            "must be greater than 0",
        ),
        (
            "[class.sensitive]\nmax-file-size = \"6GiB\"",
            "class.sensitive.max-file-size",
            "6 GiB is over policy.max-file-size (5 GiB)",
        ),
        (
            "[class.personal]\nmax-size = \"1MiB\"",
            "class.personal.max-size",
            "unknown field",
        ),
    ];
    for (lines, key, message) in cases {
        let err = load(&format!("{MINIMAL}{lines}\n"))
            .expect_err(lines)
            .to_string();
        assert!(err.contains(key) && err.contains(message), "{lines}: {err}");
    }
    let bad = MINIMAL.replace(
        "allowed = [\"s3://backups/host-a\"]",
        "allowed = [\"s3://backups/host-a\"]\nstorage-class = \"DEEP_ARCHIVE\"",
    );
    let err = load(&bad).unwrap_err().to_string();
    assert!(err.contains("key `destination.storage-class`"), "{err}");
}

#[test]
fn custom_patterns_load_with_defaults_and_bad_ones_name_their_key() {
    let text = format!(
        "{MINIMAL}\n[[classify.pattern]]\nname = \"employee-id\"\nregex = '\\bEMP-[0-9]{{6}}\\b'\n\
         \n[[classify.pattern]]\nname = \"card-ref\"\nregex = 'CR[0-9]{{16}}'\n\
         validator = \"payment-card\"\nclass = \"sensitive\"\nmax-length = 18\n"
    );
    let s = load(&text).expect("patterns load");
    let patterns = &s.raw.classify.pattern;
    assert_eq!(patterns.len(), 2);
    assert_eq!(
        (
            patterns[0].validator.as_str(),
            patterns[0].class.as_str(),
            patterns[0].max_length
        ),
        ("none", "personal", 256)
    );
    assert_eq!(
        (
            patterns[1].validator.as_str(),
            patterns[1].class.as_str(),
            patterns[1].max_length
        ),
        ("payment-card", "sensitive", 18)
    );
    // The commented example in the shipped config loads as written.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("config/backupfs.example.toml"),
    )
    .unwrap();
    // Uncomment from the first `# [[classify.pattern]]` to the end of the comment.
    let mut in_block = false;
    let example = example
        .lines()
        .map(|l| {
            in_block = (in_block && l.starts_with('#')) || l == "# [[classify.pattern]]";
            match in_block {
                true => l.trim_start_matches('#').trim_start(),
                false => l,
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let s = Config::from_toml(&example, Path::new("/etc/backupfs/config.toml"))
        .expect("the example's patterns load");
    let names: Vec<&str> = s
        .raw
        .classify
        .pattern
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["employee-id", "project-codename"]);

    let pattern = |fields: &str| format!("{MINIMAL}\n[[classify.pattern]]\n{fields}\n");
    let cases = [
        (
            pattern("name = \"id\"\nregex = 'EMP-[0-9'"),
            "key `classify.pattern[0].regex`",
            "unclosed character class",
        ),
        (
            pattern("name = \"id\"\nregex = 'x'\nvalidator = \"sha1\""),
            "key `classify.pattern[0].validator`",
            "unknown validator \"sha1\"",
        ),
        (
            pattern("name = \"id\"\nregex = 'x'\nclass = \"general\""),
            "key `classify.pattern[0].class`",
            "expected personal or sensitive",
        ),
        (
            pattern("name = \"\"\nregex = 'x'"),
            "key `classify.pattern[0].name`",
            "non-empty",
        ),
        (
            pattern("name = \"phone\"\nregex = 'x'"),
            "key `classify.pattern[0].name`",
            "built-in detector",
        ),
        (
            pattern("name = \"id\"\nregex = 'x'\nmax-length = 0"),
            "key `classify.pattern[0].max-length`",
            "between 1 and 65536",
        ),
        (
            format!(
                "{}[[classify.pattern]]\nname = \"id\"\nregex = 'y'\n",
                pattern("name = \"id\"\nregex = 'x'")
            ),
            "key `classify.pattern[1].name`",
            "classify.pattern[0] too",
        ),
        (
            pattern("name = \"id\"\nregx = 'x'"),
            "regx",
            "unknown field",
        ),
        (pattern("name = \"id\""), "regex", "missing field"),
    ];
    for (text, key, message) in cases {
        let err = load(&text).expect_err(key).to_string();
        assert!(
            err.contains(key) && err.contains(message) && err.contains("/etc/backupfs/config.toml"),
            "{key}: {err}"
        );
    }
}
