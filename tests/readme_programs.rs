//! The C and Python programs of the README's "Call boundaries" section, taken from the README as
//! they stand, compiled and run against the built plugin: each must leave both taps of both
//! calls, PRE and POST alike.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;

/// The first fenced block of `lang` after the line starting with `after` in the README.
fn readme_block(after: &str, lang: &str) -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find(after)
        .unwrap_or_else(|| panic!("README has no {after:?}"));
    let rest = &readme[start..];
    let fence = format!("```{lang}\n");
    let open = rest.find(&fence).expect("no block after it") + fence.len();
    let close = rest[open..].find("```\n").expect("unterminated block");
    rest[open..open + close].to_owned()
}

/// Fails under CI, where everything must run; elsewhere says loudly what was skipped.
fn unavailable(what: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "cannot {what} ({why}), which CI must be able to do"
    );
    println!("skipped: cannot {what} ({why})");
}

/// Runs `command` in `cwd` with the built plugin and a private registry.
fn run(mut command: Command, cwd: &Path) {
    let out = command
        .current_dir(cwd)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", cwd.join("registry.bin"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The files of `call`'s `tap` under `base`, across date directories: name → bytes.
fn files(base: &Path, call: &str, tap: &str) -> BTreeMap<String, Vec<u8>> {
    let mut found = BTreeMap::new();
    for day in std::fs::read_dir(base).unwrap() {
        let dir = day.unwrap().path().join(call).join("stt").join(tap);
        for f in segments(&dir) {
            let name = f.file_name().unwrap().to_str().unwrap().to_owned();
            found.insert(name, std::fs::read(&f).unwrap());
        }
    }
    found
}

/// Both calls were recorded on both taps, and the taps are alike.
fn assert_both_calls(cwd: &Path) {
    let base = cwd.join("recordings");
    for call in ["call-42", "call-43"] {
        let pre = files(&base, call, "PRE");
        assert!(!pre.is_empty(), "no {call} PRE files");
        assert!(
            pre == files(&base, call, "POST"),
            "{call}: PRE and POST differ"
        );
    }
}

#[test]
fn the_c_program_records_both_calls_on_both_taps() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("call.c"),
        readme_block("**C**, a whole program", "c"),
    )
    .unwrap();
    let flags = Command::new("pkg-config")
        .args(["--cflags", "--libs", "gstreamer-1.0"])
        .output()
        .unwrap();
    assert!(flags.status.success(), "{flags:?}");
    let flags = String::from_utf8(flags.stdout).unwrap();
    let mut cc = Command::new("cc");
    cc.args(["-Wall", "-Werror", "call.c", "-o", "call"])
        .args(flags.split_whitespace());
    run(cc, dir.path());
    run(Command::new(dir.path().join("call")), dir.path());
    assert_both_calls(dir.path());
}

#[test]
fn the_python_program_records_both_calls_on_both_taps() {
    // The distribution's Python, for which python3-gst-1.0 is packaged.
    let python = "/usr/bin/python3";
    let probe = Command::new(python)
        .args(["-c", "import gi; gi.require_version('Gst', '1.0')"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        unavailable(
            "run the Python program",
            "python3-gst-1.0 is not installed for /usr/bin/python3",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("call.py"),
        readme_block("**Python**, the same program", "python"),
    )
    .unwrap();
    let mut py = Command::new(python);
    py.arg("call.py");
    run(py, dir.path());
    assert_both_calls(dir.path());
}
