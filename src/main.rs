//! The `backupfs` binary: parse arguments, hand over to the library.

fn main() -> std::process::ExitCode {
    backupfs::cli::main()
}
