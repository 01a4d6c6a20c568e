//! Stage 6, gate 2: before anything leaves the machine, check that the sealed file really is
//! compressed and encrypted the way stage 5 meant to, and that its destination is allowed.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use super::seal::Sealer;

pub struct Gate2 {
    allowed: Vec<String>,
}

impl Gate2 {
    pub fn new(allowed: &[String]) -> Self {
        Self {
            allowed: allowed
                .iter()
                .map(|a| a.trim_end_matches('/').to_string())
                .collect(),
        }
    }

    /// `url` must equal an allowed prefix or sit below one, on a `/` boundary, so that
    /// `s3://backups/host-a` does not also allow `s3://backups/host-ab`.
    pub fn destination_allowed(&self, url: &str) -> Result<(), String> {
        let inside = |a: &String| {
            url == a
                || url
                    .strip_prefix(a.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        };
        if self.allowed.iter().any(inside) {
            Ok(())
        } else {
            Err(format!(
                "destination {url} is outside destination.allowed {:?}",
                self.allowed
            ))
        }
    }

    /// [`Gate2::check`] for the object of a class with a route of its own: `routed_by` is
    /// the key that routes it and the prefix it names, so that a refused destination says
    /// which setting sent the file there.
    pub fn check_routed(
        &self,
        sealer: &Sealer,
        sealed: &Path,
        url: &str,
        routed_by: Option<(&str, &str)>,
    ) -> Result<(), String> {
        match (self.destination_allowed(url), routed_by) {
            (Err(e), Some((key, prefix))) => {
                Err(format!("{e}; {key} = \"{prefix}\" routes it there"))
            }
            _ => self.check(sealer, sealed, url),
        }
    }

    pub fn check(&self, sealer: &Sealer, sealed: &Path, url: &str) -> Result<(), String> {
        self.destination_allowed(url)?;
        let file =
            File::open(sealed).map_err(|e| format!("cannot reopen {}: {e}", sealed.display()))?;
        sealer
            .verify_sealed(BufReader::new(file))
            .map_err(|e| format!("sealed output failed inspection: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_prefixes_respect_segment_boundaries() {
        let g = Gate2::new(&["s3://backups/host-a/".to_string()]);
        let cases = [
            ("s3://backups/host-a/data/ab/cd", true),
            ("s3://backups/host-a", true),
            ("s3://backups/host-ab/data/x", false),
            ("s3://other/host-a/data/x", false),
            ("s3://backups/data/x", false),
        ];
        for (url, ok) in cases {
            assert_eq!(g.destination_allowed(url).is_ok(), ok, "{url}");
        }
    }

    #[test]
    fn a_route_outside_allowed_is_refused_and_named() {
        let g = Gate2::new(&[
            "s3://backups/host-a".to_string(),
            "s3://backups/personal".to_string(),
        ]);
        let sealer = Sealer::new(b"gate two", 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sealed = dir.path().join("x.pgp");
        let mut out = Vec::new();
        sealer.seal(&b"content"[..], &mut out).unwrap();
        std::fs::write(&sealed, out).unwrap();
        let check = |url: &str, by| g.check_routed(&sealer, &sealed, url, by);
        let personal = Some(("class.personal.prefix", "personal"));
        assert_eq!(check("s3://backups/personal/data/ab/cd", personal), Ok(()));
        assert_eq!(check("s3://backups/host-a/data/ab/cd", None), Ok(()));
        let vault = Some(("class.sensitive.prefix", "vault"));
        let e = check("s3://backups/vault/data/ab/cd", vault).unwrap_err();
        assert_eq!(
            e,
            "destination s3://backups/vault/data/ab/cd is outside destination.allowed \
             [\"s3://backups/host-a\", \"s3://backups/personal\"]; class.sensitive.prefix = \
             \"vault\" routes it there"
        );
        // Inside allowed, the sealed file is still inspected.
        std::fs::write(&sealed, b"plain text").unwrap();
        let e = check("s3://backups/personal/data/ab/cd", personal).unwrap_err();
        assert!(e.contains("failed inspection"), "{e}");
    }
}
