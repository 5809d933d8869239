//! The IDX reader on files made here: good ones (plain and gzip) load, damaged ones get an error
//! that names the file and what is wrong, never a panic or a short dataset.

mod common;

use common::TempDir;
use models::program::data::{load_dir, read_idx};
use std::io::Write;

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Four standard files for 3 train and 2 test images of 2 x 2 pixels.
fn write_set(dir: &std::path::Path, gz: bool) {
    let files = [
        ("train-images-idx3-ubyte", idx_bytes(&[3, 2, 2], &[7; 12])),
        ("train-labels-idx1-ubyte", idx_bytes(&[3], &[0, 1, 9])),
        ("t10k-images-idx3-ubyte", idx_bytes(&[2, 2, 2], &[200; 8])),
        ("t10k-labels-idx1-ubyte", idx_bytes(&[2], &[5, 6])),
    ];
    for (name, bytes) in files {
        if gz {
            std::fs::write(dir.join(format!("{name}.gz")), gzip(&bytes)).unwrap();
        } else {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
}

#[test]
fn good_files_load_plain_and_gzipped() {
    for gz in [false, true] {
        let dir = TempDir::new("idx-good");
        write_set(dir.path(), gz);
        let m = load_dir(dir.path()).unwrap();
        assert_eq!(
            (m.train.len(), m.test.len(), m.train.rows, m.train.cols),
            (3, 2, 2, 2)
        );
        assert_eq!(m.train.labels, vec![0, 1, 9]);
        assert_eq!(m.test.image(1), &[200; 4]);
        assert_eq!(m.source, dir.path().display().to_string());
    }
}

#[test]
fn damaged_files_name_the_file_and_the_problem() {
    let dir = TempDir::new("idx-bad");
    let good = idx_bytes(&[3, 2, 2], &[7; 12]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() - 3].to_vec(), "truncated"),
        ("truncated.gz", gzip(&good[..good.len() - 3]), "truncated"),
        (
            "corrupt.gz",
            {
                let mut g = gzip(&good);
                let n = g.len();
                g.truncate(n - 12);
                g
            },
            "gzip",
        ),
        ("magic", [&[8u8, 0, 8, 3][..], &good[4..]].concat(), "magic"),
        (
            "float",
            [&[0u8, 0, 0x0d, 3][..], &good[4..]].concat(),
            "element type",
        ),
        ("empty", vec![], "too short"),
        ("extra", [&good[..], &[1, 2]].concat(), "trailing"),
    ];
    for (name, bytes, needle) in cases {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        let e = read_idx(&path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains(needle),
            "{name}: {e}"
        );
    }
    let e = read_idx(&dir.join("absent")).unwrap_err().to_string();
    assert!(e.contains("absent"), "{e}");
}

#[test]
fn mismatched_sets_are_refused() {
    let dir = TempDir::new("idx-mismatch");
    write_set(dir.path(), false);
    // labels for 2 images beside 3 images
    std::fs::write(
        dir.join("train-labels-idx1-ubyte"),
        idx_bytes(&[2], &[0, 1]),
    )
    .unwrap();
    let e = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("2 labels for 3 images"),
        "{e}"
    );
    // a label outside 0..=9
    write_set(dir.path(), false);
    std::fs::write(
        dir.join("t10k-labels-idx1-ubyte"),
        idx_bytes(&[2], &[5, 10]),
    )
    .unwrap();
    let e = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("t10k-labels-idx1-ubyte") && e.contains("label 10"),
        "{e}"
    );
    // images that are not [n, rows, cols]
    write_set(dir.path(), false);
    std::fs::write(
        dir.join("t10k-images-idx3-ubyte"),
        idx_bytes(&[2, 4], &[0; 8]),
    )
    .unwrap();
    let e = load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("t10k-images-idx3-ubyte") && e.contains("[n, rows, cols]"),
        "{e}"
    );
    // no training images, no test images, test images of another size: refused on loading,
    // before any training
    for (file, dims, labels, needle) in [
        ("train", vec![0u32, 2, 2], 0u32, "no training images"),
        ("t10k", vec![0, 2, 2], 0, "no test images"),
        (
            "t10k",
            vec![2, 3, 3],
            2,
            "test images are 3x3, the training images 2x2",
        ),
    ] {
        write_set(dir.path(), false);
        let pixels = (dims[0] * dims[1] * dims[2]) as usize;
        std::fs::write(
            dir.join(&format!("{file}-images-idx3-ubyte")),
            idx_bytes(&dims, &vec![0; pixels]),
        )
        .unwrap();
        std::fs::write(
            dir.join(&format!("{file}-labels-idx1-ubyte")),
            idx_bytes(&[labels], &vec![1; labels as usize]),
        )
        .unwrap();
        let e = load_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains(file) && e.contains(needle), "{needle}: {e}");
    }
    // a missing file
    write_set(dir.path(), false);
    std::fs::remove_file(dir.join("t10k-images-idx3-ubyte")).unwrap();
    let e = load_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("t10k-images-idx3-ubyte"), "{e}");
}
