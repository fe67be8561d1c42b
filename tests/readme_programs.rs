//! The README's programs, taken from the README as they stand and run against the built plugin:
//! the C and Python programs of "Call boundaries" must leave both taps of both calls, PRE and
//! POST alike; the Python program of "Using it from applications" must announce every file it
//! wrote; the `gst-launch-1.0` example, interrupted as by Ctrl-C, must finish and announce its
//! last files; and every `gst-launch-1.0` command shown uses `-e`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

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

/// `command` to run in `cwd` with the built plugin and a private registry.
fn with_plugin(mut command: Command, cwd: &Path) -> Command {
    command
        .current_dir(cwd)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", cwd.join("registry.bin"));
    command
}

/// Runs `command` in `cwd` with the built plugin and a private registry; it must succeed.
fn run(command: Command, cwd: &Path) -> Output {
    let out = with_plugin(command, cwd).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    out
}

/// The distribution's Python, for which python3-gst-1.0 is packaged, if it has it.
fn python() -> Option<&'static str> {
    let python = "/usr/bin/python3";
    let probe = Command::new(python)
        .args(["-c", "import gi; gi.require_version('Gst', '1.0')"])
        .output();
    if probe.as_ref().is_ok_and(|o| o.status.success()) {
        return Some(python);
    }
    unavailable(
        "run the README's Python programs",
        "python3-gst-1.0 is not installed for /usr/bin/python3",
    );
    None
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
    let Some(python) = python() else { return };
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

/// Each `segmentrecorder-segment-written` printed (location, samples) is a whole file that is
/// there, and every file written is printed.
#[test]
fn the_python_application_prints_every_file_it_wrote() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("record.py"),
        readme_block("**Python**, a whole program", "python"),
    )
    .unwrap();
    let mut py = Command::new(python);
    py.arg("record.py");
    let out = run(py, dir.path());
    let mut printed = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let (location, samples) = line.rsplit_once(' ').expect("location and samples");
        let path = dir.path().join(location);
        assert_eq!(
            read_wav(&path).0.len(),
            samples.parse::<usize>().unwrap(),
            "{line}"
        );
        assert_eq!(samples, "80000", "{line}");
        printed.push(path);
    }
    printed.sort();
    let written = files_under(&dir.path().join("recordings"));
    assert!(!written.is_empty(), "nothing recorded");
    assert_eq!(printed, written, "printed and written files differ");
}

/// The README's `sh` blocks' commands, backslash continuations joined.
fn readme_shell_commands() -> Vec<String> {
    let readme = include_str!("../README.md");
    let mut commands = Vec::new();
    for block in readme.split("```sh\n").skip(1) {
        let block = &block[..block.find("```\n").expect("unterminated block")];
        commands.extend(
            block
                .replace("\\\n", " ")
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    commands
}

/// Without `-e`, Ctrl-C stops the pipeline and the last files' messages are never printed.
#[test]
fn every_gst_launch_command_ends_its_stream_on_ctrl_c() {
    let launches: Vec<String> = readme_shell_commands()
        .into_iter()
        .filter(|c| c.starts_with("gst-launch-1.0"))
        .collect();
    assert!(launches.len() >= 4, "{launches:#?}");
    for command in launches {
        let options: Vec<&str> = command
            .split_whitespace()
            .skip(1)
            .take_while(|w| w.starts_with('-'))
            .collect();
        assert!(options.contains(&"-e"), "no -e: {command}");
    }
}

/// The README's first `gst-launch-1.0` pipeline, interrupted with SIGINT once it announced a
/// file: the open bucket of each tap is finished, announced and published, nothing is left
/// as `.part`.
#[test]
fn the_gst_launch_example_finishes_its_last_files_on_ctrl_c() {
    let block = readme_block("## gst-launch-1.0", "sh");
    let start = block
        .find("gst-launch-1.0")
        .expect("a gst-launch-1.0 command");
    let launch = &block[start..];
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("out.txt");
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(format!("exec {launch}"))
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit());
    let mut child = with_plugin(sh, dir.path()).spawn().unwrap();
    let announced = |n: usize| {
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("segmentrecorder-segment-written")
            .count()
            >= n
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !announced(1) {
        assert!(child.try_wait().unwrap().is_none(), "gst-launch-1.0 ended");
        assert!(Instant::now() < deadline, "no file announced in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: signalling our own child, which has not been waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("gst-launch-1.0 did not end within 30 s of SIGINT");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(out.contains("Got EOS from element"), "{out}");
    let files = files_under(&dir.path().join("recordings"));
    for tap in ["PRE", "POST"] {
        let taps: Vec<_> = files
            .iter()
            .filter(|f| f.parent().unwrap().ends_with(tap))
            .collect();
        assert!(taps.len() >= 2, "{tap}: {files:?}");
    }
    for f in &files {
        assert_eq!(f.extension().unwrap(), "wav", "{}", f.display());
        assert_eq!(read_wav(f).0.len(), 80_000, "{}", f.display());
    }
    let messages = out.matches("segmentrecorder-segment-written").count();
    assert_eq!(messages, files.len(), "{out}");
}
