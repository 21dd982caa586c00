//! `firedrill chaos` and `firedrill replay` from the outside: the same seeds print the same
//! table whatever the thread count; planted bugs are found, shrunk to at most three faults and
//! replayed bit for bit; the correct core survives a swarm.

use std::path::PathBuf;
use std::process::{Command, Output};

fn firedrill(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(args)
        .output()
        .expect("run firedrill")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A fresh folder under the target directory for one test's output.
fn scratch(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch folder");
    d
}

/// The swarm scenario, shortened so a test runs in seconds.
const SHORT: [&str; 4] = ["--set", "duration=6m", "--set", "chaos.quiet=4m"];

#[test]
fn the_same_seeds_print_the_same_table_whatever_the_jobs() {
    let out = scratch("chaos-same-table");
    let o = out.display().to_string();
    let run = |jobs: &str| {
        let mut args = vec![
            "chaos",
            "scenarios/chaos.toml",
            "--seeds",
            "1..6",
            "--no-shrink",
            "--jobs",
            jobs,
            "--out",
            &o,
        ];
        args.extend(SHORT);
        firedrill(&args)
    };
    let a = run("1");
    let b = run("2");
    assert_eq!(a.status.code(), b.status.code(), "{}", text(&a.stderr));
    assert!(
        matches!(a.status.code(), Some(0 | 3)),
        "{}",
        text(&a.stderr)
    );
    assert_eq!(text(&a.stdout), text(&b.stdout));
    assert!(
        text(&a.stdout).contains("6 seeds run"),
        "{}",
        text(&a.stdout)
    );
}

#[test]
fn bad_seed_ranges_are_refused_with_exit_2() {
    for r in ["5..1", "x..3", "7"] {
        let o = firedrill(&["chaos", "scenarios/chaos.toml", "--seeds", r]);
        assert_eq!(o.status.code(), Some(2), "{r}");
        assert!(
            text(&o.stderr).contains("expected A..B"),
            "{}",
            text(&o.stderr)
        );
    }
}
