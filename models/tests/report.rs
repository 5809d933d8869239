//! `genzoo report` over real runs: three tiny runs trained through the program (a VAE, DCGAN and
//! FVSBN), the page written, and checked as text (a section and an overview row per run, every
//! inline image a PNG that decodes) and, where Chromium is installed, in the browser: rendered
//! headless to a screenshot that is not blank, its DOM holding every section, no console error.

mod common;

use common::{genzoo, genzoo_ok as ok, TempDir};
use std::path::Path;
use std::process::Command;

/// Base64 decoding, written apart from the program's encoder so that it checks it.
fn unbase64(s: &str) -> Result<Vec<u8>, String> {
    let value = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(format!("{:?} is not a base64 digit", c as char)),
        } as u32)
    };
    if !s.len().is_multiple_of(4) {
        return Err(format!("{} base64 digits, not a multiple of 4", s.len()));
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let bytes = s.as_bytes();
    for (i, q) in bytes.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != bytes.len() / 4) {
            return Err("misplaced padding".into());
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | value(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Ok(out)
}

/// Decodes a PNG in full, returning its size and the pixel bytes.
fn decode_png(bytes: &[u8]) -> Result<(u32, u32, Vec<u8>), String> {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().map_err(|e| e.to_string())?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("no buffer size")?];
    let info = reader.next_frame(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

/// What the checks of the page found wrong, empty when nothing.
fn page_problems(html: &str, runs: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    let sections = html.matches("<section").count();
    if sections != runs.len() {
        problems.push(format!("{sections} sections for {} runs", runs.len()));
    }
    let overview = html
        .split("<table class=\"overview\">")
        .nth(1)
        .and_then(|t| t.split("</table>").next())
        .unwrap_or("");
    for run in runs {
        let row = overview
            .split("<tr>")
            .find(|r| r.contains(&format!(">{run}</a>")));
        match row {
            None => problems.push(format!("no overview row for {run}")),
            Some(row) => {
                // the row's link leads to a section
                let anchor = row
                    .split("href=\"#")
                    .nth(1)
                    .and_then(|a| a.split('"').next())
                    .unwrap_or("");
                if anchor.is_empty() || !html.contains(&format!("<section id=\"{anchor}\"")) {
                    problems.push(format!("{run}'s row does not link to its section"));
                }
            }
        }
    }
    let mut images = 0;
    for (i, rest) in html
        .split("src=\"data:image/png;base64,")
        .skip(1)
        .enumerate()
    {
        images += 1;
        let data = rest.split('"').next().unwrap_or("");
        match unbase64(data).and_then(|b| decode_png(&b)) {
            Ok((w, h, _)) if w > 0 && h > 0 => {}
            Ok(_) => problems.push(format!("image {i} is empty")),
            Err(e) => problems.push(format!("image {i} does not decode as a PNG: {e}")),
        }
    }
    // each run has at least its sample grid and loss plot
    if images < 2 * runs.len() {
        problems.push(format!("only {images} images for {} runs", runs.len()));
    }
    problems
}

fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// The console messages in Chromium's log (`--enable-logging=stderr`), each logged as
/// `[...:INFO:CONSOLE:line] "message", source: ...` whatever its level (a `console.error` reads
/// like a `console.log`; an uncaught exception's message starts "Uncaught"). The page has no
/// script, so any console message (a script error, a resource refused) is a fault.
fn console_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

/// Renders the page headless: its screenshot must be a PNG that is not one flat colour, its
/// DOM must hold `sections` sections, and the log no console error.
fn browser_problems(browser: &str, page: &Path, shot: &Path, sections: usize) -> Vec<String> {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let profile = page.with_file_name("chromium-profile");
    // the browser's output in files, and killed if it hangs
    let run = |extra: &[String]| -> (bool, String, String) {
        let (out, err) = (
            page.with_file_name("chromium.out"),
            page.with_file_name("chromium.err"),
        );
        let mut child = Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--enable-logging=stderr",
                "--v=0",
                "--window-size=1200,4000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .args(extra)
            .arg(&url)
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .spawn()
            .expect("chromium starts");
        let t0 = std::time::Instant::now();
        let success = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status.success();
            }
            if t0.elapsed().as_secs() > 120 {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let read =
            |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
        (success, read(&out), read(&err))
    };
    let mut problems = Vec::new();
    let (success, _, log) = run(&[format!("--screenshot={}", shot.display())]);
    if !success {
        problems.push(format!("--screenshot failed or hung: {log}"));
    }
    problems.extend(console_errors(&log).iter().map(|l| format!("console: {l}")));
    match std::fs::read(shot)
        .map_err(|e| e.to_string())
        .and_then(|b| decode_png(&b))
    {
        Ok((w, h, px)) => {
            let stride = px.len() / (w * h) as usize;
            let first = &px[..stride];
            if px.chunks(stride).all(|p| p == first) {
                problems.push(format!("the {w} x {h} screenshot is blank"));
            }
        }
        Err(e) => problems.push(format!("the screenshot is not a PNG: {e}")),
    }
    let (success, dom, log) = run(&["--dump-dom".to_string()]);
    if !success {
        problems.push(format!("--dump-dom failed or hung: {log}"));
    }
    problems.extend(console_errors(&log).iter().map(|l| format!("console: {l}")));
    let parsed = dom.matches("<section").count();
    if parsed != sections {
        problems.push(format!(
            "the browser parsed {parsed} sections, the page has {sections}"
        ));
    }
    problems
}

#[test]
fn report_shows_every_run_and_renders_in_a_browser() {
    let dir = TempDir::new("report");
    let runs = ["dcgan", "fvsbn", "vae"];
    for model in runs {
        let out = dir.join(&format!("runs/{model}"));
        let mut args = vec![
            "train",
            model,
            "--epochs",
            "1",
            "--limit-batches",
            "1",
            "--quiet",
            "--out",
            out.to_str().unwrap(),
        ];
        // the likelihood and latent models hold out fewer digits for validation
        if model != "dcgan" {
            args.extend(["--val", "32"]);
        }
        ok(&args);
    }
    let runs_dir = dir.join("runs");
    let page = dir.join("runs/report.html");
    let page_s = page.to_str().unwrap();
    ok(&["report", runs_dir.to_str().unwrap(), "--out", page_s]);
    let html = std::fs::read_to_string(&page).unwrap();
    let problems = page_problems(&html, &runs);
    assert!(problems.is_empty(), "{problems:#?}");
    // the models' papers and the metrics of their families are there
    for text in ["Radford", "Kingma", "fcd", "nll", "classes_covered"] {
        assert!(html.contains(text), "no {text:?} in the page");
    }
    // the final metrics beside their real-vs-real baselines (the first fcd row: dcgan's)
    let fcd_row = html
        .split("<tr><td>fcd</td>")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or("");
    assert!(
        fcd_row.matches("<td>").count() == 2 && !fcd_row.ends_with("<td></td>"),
        "fcd without its baseline: {fcd_row}"
    );
    // the latent model's pictures, under their file names
    for picture in ["reconstructions.png", "interpolations.png"] {
        assert!(
            html.contains(&format!("<figcaption>{picture}</figcaption>")),
            "no {picture}"
        );
    }
    // the checks see a missing section and a corrupt image
    let dropped = html.replacen("<section", "<div", 1);
    assert!(!page_problems(&dropped, &runs).is_empty());
    let corrupt = html.replacen("base64,iVBOR", "base64,iVBXR", 1);
    assert!(!page_problems(&corrupt, &runs).is_empty());

    // a second report writes over the first; a file that is not HTML is never overwritten
    ok(&["report", runs_dir.to_str().unwrap(), "--out", page_s]);
    let notes = dir.join("notes.html");
    std::fs::write(&notes, "my notes").unwrap();
    let o = genzoo(&[
        "report",
        runs_dir.to_str().unwrap(),
        "--out",
        notes.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "my notes");
    let o = genzoo(&[
        "report",
        runs_dir.to_str().unwrap(),
        "--out",
        dir.join("r.json").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    // a folder without runs is an error
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = genzoo(&[
        "report",
        empty.to_str().unwrap(),
        "--out",
        dir.join("e.html").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no run folders"));

    match chromium() {
        None => {
            // CI installs Chromium (.ci/chromium.sh) and says so, and then a browser that
            // cannot be run is a failure
            assert!(
                std::env::var("REQUIRE_CHROMIUM").as_deref() != Ok("1"),
                "REQUIRE_CHROMIUM=1 but no chromium, chromium-browser or google-chrome runs"
            );
            eprintln!(
                "report test: no chromium, chromium-browser or google-chrome on PATH; the browser check is skipped"
            )
        }
        Some(browser) => {
            let problems = browser_problems(browser, &page, &dir.join("shot.png"), runs.len());
            assert!(problems.is_empty(), "{browser}: {problems:#?}");
            // the browser checks see a blank page with a script error and no sections
            let bad = dir.join("bad.html");
            std::fs::write(
                &bad,
                "<!DOCTYPE html><html><body><script>throw new Error('boom')</script></body></html>",
            )
            .unwrap();
            let problems = browser_problems(browser, &bad, &dir.join("bad.png"), 1);
            for want in ["console", "blank", "parsed 0 sections"] {
                assert!(
                    problems.iter().any(|p| p.contains(want)),
                    "{want}: {problems:#?}"
                );
            }
        }
    }
}
