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
}
