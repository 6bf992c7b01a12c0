//! `tailguard scan` on real files, directories and standard input.

mod common;

use std::io::Write;
use std::process::Stdio;

use common::*;

/// A fake GitHub token, assembled so this file itself holds no token.
fn token(n: u32) -> String {
    format!("gh{}_{}{:04}", "p", "Zq8Rk2LmT7vXw4NbP9yHc3JdF6sGa1Ue", n)
}

#[test]
fn findings_give_file_line_and_column_and_exit_one() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("repo");
    write(&tree.join("ok.txt"), "nothing here\n");
    write(
        &tree.join("ci/build.log"),
        &format!("step 1\n  export GH_TOKEN={}\nstep 2\n", token(1)),
    );
    write(
        &tree.join(".git/config"),
        &format!("token = {}\n", token(2)),
    );
    let mut binary = b"\0\x01binary".to_vec();
    binary.extend_from_slice(token(3).as_bytes());
    std::fs::write(tree.join("blob.bin"), binary).unwrap();

    let out = tailguard(dir.path())
        .arg("scan")
        .arg(&tree)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let expected = format!("{}:2:19: github-pat", tree.join("ci/build.log").display());
    assert!(text.starts_with(&expected), "{text}");
    assert_eq!(
        text.lines().count(),
        1,
        ".git and binary files are skipped: {text}"
    );
    for n in 1..=3 {
        assert!(!text.contains(&token(n)) && !stderr(&out).contains(&token(n)));
    }
    assert!(
        stderr(&out).contains("1 binary skipped"),
        "{}",
        stderr(&out)
    );
}

/// One scan of many files (which shares a read buffer and the regex caches between them)
/// reports for each file what a scan of that file alone reports.
#[test]
fn files_scanned_together_report_as_when_scanned_alone() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("logs");
    // A fixed fingerprint key, so separate scans report the same fingerprints.
    let scan = |path: &std::path::Path| {
        let out = tailguard(dir.path())
            .args(["scan", "--fingerprint-key", "k"])
            .arg(path)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        stdout(&out)
    };
    let mut alone = Vec::new();
    for n in 1..=6 {
        let file = tree.join(format!("job{n}.log"));
        // The longest file first, so a later, shorter one reads over its leftovers.
        let filler = "compiling crate ... ok\n".repeat(4000 / n as usize);
        write(
            &file,
            &format!("{filler}export GH_TOKEN={}\nlast line {n}", token(n)),
        );
        alone.push(scan(&file));
    }
    assert_eq!(scan(&tree), alone.concat());
}

#[test]
fn clean_input_exits_zero_and_a_missing_path_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tailguard(dir.path())
        .args(["scan", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = tailguard(dir.path())
        .args(["scan", "/no/such/path"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn line_numbers_stay_right_across_read_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let filler = "compiling crate-with-a-long-name v1.2.3 (/build/src/crates/some/path)\n";
    let mut text = String::new();
    let mut expected_lines = Vec::new();
    let mut line = 1;
    for n in 0..6 {
        // Secrets either side of each 1 MiB boundary.
        while text.len() < (n / 2 + 1) * (1 << 20) - 200 + (n % 2) * 400 {
            text.push_str(filler);
            line += 1;
        }
        text.push_str(&format!("token={}\n", token(n as u32)));
        expected_lines.push(line);
        line += 1;
    }
    let file = write(&dir.path().join("big.log"), &text);
    let out = tailguard(dir.path())
        .args(["scan", "--format", "json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let lines: Vec<u64> = findings
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["line"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = expected_lines.iter().map(|l| *l as u64).collect();
    assert_eq!(lines, expected);
    assert!(findings[0]["fingerprint"].as_str().unwrap().len() == 12);
    assert_eq!(findings[0]["column"], 7);
}

#[test]
fn sarif_output_has_rules_results_and_fingerprints() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(&dir.path().join("x.log"), &format!("a\n{}\n", token(9)));
    let out = tailguard(dir.path())
        .args(["scan", "--format", "sarif", "--fingerprint-key", "fleet"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "tailguard");
    assert_eq!(run["tool"]["driver"]["rules"][0]["id"], "github-pat");
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "github-pat");
    assert_eq!(
        result["locations"][0]["physicalLocation"]["region"]["startLine"],
        2
    );
    let fp = result["partialFingerprints"]["tailguardSecret/v1"]
        .as_str()
        .unwrap();
    // The same key gives the same fingerprint on the next scan.
    let again = tailguard(dir.path())
        .args(["scan", "--format", "sarif", "--fingerprint-key", "fleet"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(stdout(&again).contains(fp));
}
