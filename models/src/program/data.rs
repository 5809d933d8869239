//! Data: the IDX format of MNIST / Fashion-MNIST (gzip-compressed or not) and the embedded
//! 10,000-digit MNIST subset in `data/mnist10k` that every command uses by default.

use autograd::{Error, Result, Rng, Tensor};
use std::io::Read;
use std::path::Path;

/// An IDX array of unsigned bytes: `dims` (e.g. [n, 28, 28]) and the row-major data.
#[derive(Clone, Debug, PartialEq)]
pub struct Idx {
    pub dims: Vec<usize>,
    pub data: Vec<u8>,
}

fn io_err(name: &str, msg: impl Into<String>) -> Error {
    Error::Io {
        path: name.to_string(),
        msg: msg.into(),
    }
}

/// The most data bytes an IDX header may declare (1 GiB: full MNIST's training images are
/// 47 MB), so that a hostile header cannot make us allocate or inflate without bound.
pub const MAX_IDX_DATA_BYTES: usize = 1 << 30;

/// Parses IDX bytes (gunzipping first if they start with the gzip magic). `name` is used in
/// errors. Checks the magic number, the element type (unsigned byte), the dimensions and that the
/// byte count is exactly what the dimensions say.
pub fn parse_idx(bytes: &[u8], name: &str) -> Result<Idx> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_idx_stream(flate2::read::GzDecoder::new(bytes), name, "gzip stream")
    } else {
        read_idx_stream(bytes, name, "file")
    }
}

/// Reads an IDX array from `source` without ever reading more than its header declares plus
/// one byte (how trailing bytes are told apart), and refuses a header that declares more than
/// [`MAX_IDX_DATA_BYTES`] before allocating: a gzip bomb costs what its header says, at most.
/// `what` names the source in errors ("file", "gzip stream").
fn read_idx_stream(source: impl Read, name: &str, what: &str) -> Result<Idx> {
    let mut source = source;
    let read_err = |e: std::io::Error| {
        if what == "gzip stream" {
            io_err(name, format!("corrupt gzip stream: {e}"))
        } else {
            io_err(name, e.to_string())
        }
    };
    let mut head = [0u8; 4];
    let got = read_up_to(&mut source, &mut head).map_err(read_err)?;
    if got < 4 {
        return Err(io_err(
            name,
            format!("too short for an IDX header ({got} bytes)"),
        ));
    }
    if head[0] != 0 || head[1] != 0 {
        return Err(io_err(
            name,
            format!(
                "bad IDX magic number {:02x}{:02x}{:02x}{:02x} (expected 0000 08 nn)",
                head[0], head[1], head[2], head[3]
            ),
        ));
    }
    if head[2] != 0x08 {
        return Err(io_err(
            name,
            format!(
                "IDX element type 0x{:02x} is not unsigned byte (0x08)",
                head[2]
            ),
        ));
    }
    let rank = head[3] as usize;
    if rank == 0 {
        return Err(io_err(name, "IDX file declares zero dimensions"));
    }
    let mut dim_bytes = vec![0u8; 4 * rank];
    let got = read_up_to(&mut source, &mut dim_bytes).map_err(read_err)?;
    if got < dim_bytes.len() {
        return Err(io_err(
            name,
            format!(
                "truncated header: {rank} dimensions need {} bytes, {what} has {}",
                4 + 4 * rank,
                4 + got
            ),
        ));
    }
    let dims: Vec<usize> = dim_bytes
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= MAX_IDX_DATA_BYTES)
        .ok_or_else(|| {
            io_err(
                name,
                format!(
                    "dimensions {dims:?} declare more than {MAX_IDX_DATA_BYTES} bytes, \
                     the most an IDX file may hold here"
                ),
            )
        })?;
    // the buffer grows with the bytes that arrive (doubling, never past what the header
    // declares plus one), so that a short input costs its own size, not its header's claim:
    // reserving the declared size up front let 12 bytes allocate 1 GiB (fuzz/RESULTS.md)
    let mut data: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; (expected + 1).min(64 << 10)];
    let mut source = source.take(expected as u64 + 1);
    loop {
        let n = match source.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_err(e)),
        };
        if data.capacity() - data.len() < n {
            let want = (2 * data.capacity()).max(data.len() + n).min(expected + 1);
            data.try_reserve_exact(want - data.len()).map_err(|_| {
                io_err(
                    name,
                    format!("cannot allocate {want} bytes for dimensions {dims:?}"),
                )
            })?;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    let got = data.len();
    if got != expected {
        let detail = if got < expected {
            format!("truncated: dimensions {dims:?} need {expected} data bytes, {what} has {got}")
        } else {
            format!("has trailing bytes: dimensions {dims:?} need {expected} data bytes, {what} has more")
        };
        return Err(io_err(name, detail));
    }
    Ok(Idx { dims, data })
}

/// Fills as much of `buf` as `source` has; returns how much (short only at the end).
fn read_up_to(source: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads an IDX file, gzip-compressed or not, streaming it through the bounded reader (a plain
/// file is not read past what its header declares either).
pub fn read_idx(path: &Path) -> Result<Idx> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| io_err(&name, e.to_string()))?;
    let mut file = std::io::BufReader::new(file);
    let start = std::io::BufRead::fill_buf(&mut file).map_err(|e| io_err(&name, e.to_string()))?;
    if start.starts_with(&[0x1f, 0x8b]) {
        read_idx_stream(flate2::read::GzDecoder::new(file), &name, "gzip stream")
    } else {
        read_idx_stream(file, &name, "file")
    }
}

/// Images (uint8, [n, rows, cols]) with their labels (0..=9).
#[derive(Clone, Debug)]
pub struct Split {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn pixels(&self) -> usize {
        self.rows * self.cols
    }
    /// The bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        &self.images[i * self.pixels()..(i + 1) * self.pixels()]
    }
}

/// A dataset in the MNIST layout: a fixed train and test split.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train: Split,
    pub test: Split,
    /// Where it came from, for run configs ("embedded mnist10k" or the folder).
    pub source: String,
}

impl Mnist {
    /// A digest of the images and labels of both splits (FNV-1a, 64 bits, over their sizes
    /// and bytes): the same data gives the same digest, gzipped or not, wherever it lies.
    pub fn digest(&self) -> String {
        let mut h = crate::program::fnv::Fnv1a::new();
        for split in [&self.train, &self.test] {
            for n in [split.len(), split.rows, split.cols] {
                h.eat(&(n as u64).to_le_bytes());
            }
            h.eat(&split.images);
            h.eat(&split.labels);
        }
        format!("{:016x}", h.finish())
    }
}

fn split_from(images: Idx, labels: Idx, images_name: &str, labels_name: &str) -> Result<Split> {
    if images.dims.len() != 3 {
        return Err(io_err(
            images_name,
            format!(
                "expected [n, rows, cols] images, got dimensions {:?}",
                images.dims
            ),
        ));
    }
    if labels.dims.len() != 1 {
        return Err(io_err(
            labels_name,
            format!("expected [n] labels, got dimensions {:?}", labels.dims),
        ));
    }
    if images.dims[0] != labels.dims[0] {
        return Err(io_err(
            labels_name,
            format!(
                "{} labels for {} images in {images_name}",
                labels.dims[0], images.dims[0]
            ),
        ));
    }
    if let Some(bad) = labels.data.iter().find(|&&l| l > 9) {
        return Err(io_err(labels_name, format!("label {bad} is outside 0..=9")));
    }
    Ok(Split {
        rows: images.dims[1],
        cols: images.dims[2],
        images: images.data,
        labels: labels.data,
    })
}

const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

/// Reads the four standard files from `dir` (each either plain or with a `.gz` suffix).
pub fn load_dir(dir: &Path) -> Result<Mnist> {
    let (mut files, mut names) = (Vec::new(), Vec::new());
    for stem in FILES {
        let plain = dir.join(stem);
        let gz = dir.join(format!("{stem}.gz"));
        let path = if plain.exists() {
            plain
        } else if gz.exists() {
            gz
        } else {
            return Err(io_err(
                &dir.display().to_string(),
                format!("neither {stem} nor {stem}.gz is in this folder"),
            ));
        };
        files.push(read_idx(&path)?);
        names.push(path.display().to_string());
    }
    let [train_images, train_labels, test_images, test_labels]: [Idx; 4] =
        files.try_into().expect("one entry per name in FILES");
    let train = split_from(train_images, train_labels, &names[0], &names[1])?;
    let test = split_from(test_images, test_labels, &names[2], &names[3])?;
    // refused here, before any training: a run on nothing, or a test set it cannot be scored on
    if train.is_empty() {
        return Err(io_err(
            &names[0],
            "no training images (the header declares 0)",
        ));
    }
    if test.is_empty() {
        return Err(io_err(
            &names[2],
            "no test images (the header declares 0): evaluation needs some",
        ));
    }
    if (test.rows, test.cols) != (train.rows, train.cols) {
        return Err(io_err(
            &names[2],
            format!(
                "test images are {}x{}, the training images {}x{}",
                test.rows, test.cols, train.rows, train.cols
            ),
        ));
    }
    Ok(Mnist {
        train,
        test,
        source: dir.display().to_string(),
    })
}

/// The embedded MNIST subset (9,001 train / 999 test digits), compiled into the program.
pub fn embedded() -> Result<Mnist> {
    const TRAIN_IMAGES: &[u8] = include_bytes!("../../../data/mnist10k/train-images-idx3-ubyte.gz");
    const TRAIN_LABELS: &[u8] = include_bytes!("../../../data/mnist10k/train-labels-idx1-ubyte.gz");
    const TEST_IMAGES: &[u8] = include_bytes!("../../../data/mnist10k/t10k-images-idx3-ubyte.gz");
    const TEST_LABELS: &[u8] = include_bytes!("../../../data/mnist10k/t10k-labels-idx1-ubyte.gz");
    let names = FILES.map(|f| format!("embedded mnist10k/{f}.gz"));
    Ok(Mnist {
        train: split_from(
            parse_idx(TRAIN_IMAGES, &names[0])?,
            parse_idx(TRAIN_LABELS, &names[1])?,
            &names[0],
            &names[1],
        )?,
        test: split_from(
            parse_idx(TEST_IMAGES, &names[2])?,
            parse_idx(TEST_LABELS, &names[3])?,
            &names[2],
            &names[3],
        )?,
        source: "embedded mnist10k".into(),
    })
}

/// Where the data comes from: the embedded subset, or a folder of the four standard files.
pub fn load(dir: Option<&Path>) -> Result<Mnist> {
    match dir {
        Some(d) => load_dir(d),
        None => embedded(),
    }
}

// ----- pixel transforms ------------------------------------------------------------------------

/// How images become model inputs. Every variant gives values the models read as "an image":
/// [0, 1] for all but [`Pixels::Symmetric`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pixels {
    /// byte / 255, in [0, 1].
    Unit,
    /// byte / 127.5 - 1, in [-1, 1] (tanh generators).
    Symmetric,
    /// 1 where byte > 127, else 0 (a fixed binarisation: the same every epoch).
    Threshold,
    /// 1 with probability byte / 255 (a fresh binarisation every time, drawn from the seeded
    /// generator that is passed in).
    Stochastic,
}

/// byte / 255.
pub fn scale_unit(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| f32::from(b) / 255.0).collect()
}

/// byte / 127.5 - 1.
pub fn scale_symmetric(bytes: &[u8]) -> Vec<f32> {
    bytes.iter().map(|&b| f32::from(b) / 127.5 - 1.0).collect()
}

/// 1 where byte > 127, else 0.
pub fn binarize_threshold(bytes: &[u8]) -> Vec<f32> {
    bytes
        .iter()
        .map(|&b| if b > 127 { 1.0 } else { 0.0 })
        .collect()
}

/// 1 with probability byte / 255, one uniform draw per pixel in order: `u < byte / 255`, so a
/// black pixel is always 0 and a white one always 1. The same generator state gives the same
/// result.
pub fn binarize_stochastic(bytes: &[u8], rng: &mut Rng) -> Vec<f32> {
    bytes
        .iter()
        .map(|&b| {
            if rng.uniform_f32() < f32::from(b) / 255.0 {
                1.0
            } else {
                0.0
            }
        })
        .collect()
}

/// Applies `pixels` to `bytes` (`rng` is used only by [`Pixels::Stochastic`]).
pub fn transform(bytes: &[u8], pixels: Pixels, rng: &mut Rng) -> Vec<f32> {
    match pixels {
        Pixels::Unit => scale_unit(bytes),
        Pixels::Symmetric => scale_symmetric(bytes),
        Pixels::Threshold => binarize_threshold(bytes),
        Pixels::Stochastic => binarize_stochastic(bytes, rng),
    }
}

// ----- batches ---------------------------------------------------------------------------------

/// A mini-batch: `len()` images of `rows x cols` bytes and their labels.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images as an f32 tensor [B, 1, rows, cols] with `pixels` applied.
    pub fn tensor(&self, pixels: Pixels, rng: &mut Rng) -> Result<Tensor> {
        Tensor::from_vec(
            transform(&self.images, pixels, rng),
            &[self.len(), 1, self.rows, self.cols],
        )
    }

    /// byte / 255 as [B, 1, rows, cols].
    pub fn unit(&self) -> Result<Tensor> {
        Tensor::from_vec(
            scale_unit(&self.images),
            &[self.len(), 1, self.rows, self.cols],
        )
    }

    /// The labels as class indices.
    pub fn label_indices(&self) -> Vec<usize> {
        self.labels.iter().map(|&l| usize::from(l)).collect()
    }
}

impl Split {
    /// The images and labels at `indices` (each must be below `len()`), in that order.
    pub fn batch(&self, indices: &[usize]) -> Batch {
        let mut images = Vec::with_capacity(indices.len() * self.pixels());
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Batch {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            rows: self.rows,
            cols: self.cols,
        }
    }

    /// The first `n` items (all of them when `n >= len()`).
    pub fn head(&self, n: usize) -> Split {
        self.split_at(n).0
    }

    /// The first `n` items and the rest (`n` at most `len()`): a training split and the
    /// validation split held out at its end.
    pub fn split_at(&self, n: usize) -> (Split, Split) {
        let n = n.min(self.len());
        let cut = n * self.pixels();
        let part = |images: &[u8], labels: &[u8]| Split {
            images: images.to_vec(),
            labels: labels.to_vec(),
            rows: self.rows,
            cols: self.cols,
        };
        (
            part(&self.images[..cut], &self.labels[..n]),
            part(&self.images[cut..], &self.labels[n..]),
        )
    }

    /// All images as one f32 tensor [n, 1, rows, cols] with `pixels` applied.
    pub fn tensor(&self, pixels: Pixels, rng: &mut Rng) -> Result<Tensor> {
        Tensor::from_vec(
            transform(&self.images, pixels, rng),
            &[self.len(), 1, self.rows, self.cols],
        )
    }
}

/// The index lists of one pass over `n` items in batches of `batch_size` (the last one may be
/// shorter), in a seeded random order or in order.
///
/// ```
/// use models::program::data::Batches;
/// let a: Vec<Vec<usize>> = Batches::shuffled(10, 4, 7).collect();
/// assert_eq!(a.iter().map(|b| b.len()).collect::<Vec<_>>(), [4, 4, 2]);
/// assert_eq!(a, Batches::shuffled(10, 4, 7).collect::<Vec<_>>());
/// let mut all: Vec<usize> = a.concat();
/// all.sort();
/// assert_eq!(all, (0..10).collect::<Vec<_>>());
/// ```
#[derive(Clone, Debug)]
pub struct Batches {
    order: Vec<usize>,
    batch_size: usize,
    next: usize,
}

impl Batches {
    /// `0..n` in order. A `batch_size` of 0 is taken as 1.
    pub fn sequential(n: usize, batch_size: usize) -> Batches {
        Batches {
            order: (0..n).collect(),
            batch_size: batch_size.max(1),
            next: 0,
        }
    }

    /// `0..n` shuffled by a generator seeded with `seed` (Fisher-Yates).
    pub fn shuffled(n: usize, batch_size: usize, seed: u64) -> Batches {
        let mut b = Batches::sequential(n, batch_size);
        Rng::new(seed).shuffle(&mut b.order);
        b
    }

    /// The whole order, batch after batch.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
}

impl Iterator for Batches {
    type Item = Vec<usize>;

    fn next(&mut self) -> Option<Vec<usize>> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + self.batch_size).min(self.order.len());
        let out = self.order[self.next..end].to_vec();
        self.next = end;
        Some(out)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.next).div_ceil(self.batch_size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches {}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut b = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            b.extend_from_slice(&d.to_be_bytes());
        }
        b.extend_from_slice(data);
        b
    }

    #[test]
    fn reads_a_good_file_plain_and_gzipped() {
        let bytes = idx_bytes(&[2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        let idx = parse_idx(&bytes, "x").unwrap();
        assert_eq!(idx.dims, vec![2, 2, 3]);
        assert_eq!(idx.data[11], 12);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        assert_eq!(parse_idx(&gz.finish().unwrap(), "x.gz").unwrap(), idx);
    }

    #[test]
    fn damaged_files_get_errors_naming_the_file_and_the_problem() {
        let good = idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (good[..good.len() - 1].to_vec(), "truncated"),
            ([&good[..], &[0]].concat(), "trailing"),
            (vec![1, 2, 8, 1, 0, 0, 0, 1, 0], "magic"),
            (vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "element type"),
            (vec![0, 0, 8, 3, 0, 0], "truncated header"),
            (vec![0x1f, 0x8b, 8, 0, 1, 2, 3], "gzip"),
            (vec![0, 0], "too short"),
        ];
        for (bytes, needle) in cases {
            let e = parse_idx(&bytes, "digits.idx").unwrap_err().to_string();
            assert!(
                e.contains("digits.idx") && e.contains(needle),
                "{needle}: {e}"
            );
        }
    }

    /// Counts the bytes a reader hands out.
    struct Counted<R> {
        inner: R,
        count: std::rc::Rc<std::cell::Cell<usize>>,
    }

    impl<R: Read> Read for Counted<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.count.set(self.count.get() + n);
            Ok(n)
        }
    }

    #[test]
    fn a_gzip_bomb_is_inflated_only_as_far_as_its_header_declares() {
        // a header for 512 digits (401,408 bytes) followed by 256 MB of zeros: about 250 KB
        // compressed
        let declared = 512 * 28 * 28;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &idx_bytes(&[512, 28, 28], &[])).unwrap();
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            std::io::Write::write_all(&mut gz, &zeros).unwrap();
        }
        let bomb = gz.finish().unwrap();
        assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
        let count = std::rc::Rc::new(std::cell::Cell::new(0));
        let source = Counted {
            inner: flate2::read::GzDecoder::new(&bomb[..]),
            count: count.clone(),
        };
        let e = read_idx_stream(source, "bomb.gz", "gzip stream")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bomb.gz") && e.contains("trailing"), "{e}");
        // the header, the declared data and the one byte that shows there is more
        assert_eq!(count.get(), 4 + 12 + declared + 1);
        // through the public entry point too
        let e = parse_idx(&bomb, "bomb.gz").unwrap_err().to_string();
        assert!(e.contains("trailing"), "{e}");
    }

    #[test]
    fn a_header_declaring_more_than_the_cap_is_refused_before_anything_is_read() {
        // 65536 x 65536 bytes = 4 GiB declared, nothing behind it
        let e = parse_idx(&idx_bytes(&[65536, 65536], &[]), "huge.idx")
            .unwrap_err()
            .to_string();
        assert!(e.contains("huge.idx") && e.contains("more than"), "{e}");
        // and dimensions whose product overflows
        let e = parse_idx(&idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[]), "o.idx")
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn the_embedded_subset_loads_with_its_documented_sizes() {
        let m = embedded().unwrap();
        assert_eq!(
            (m.train.len(), m.test.len(), m.train.rows, m.train.cols),
            (9001, 999, 28, 28)
        );
        let mut counts = [0usize; 10];
        for &l in &m.train.labels {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 700), "{counts:?}");
    }

    #[test]
    fn transforms_and_batches() {
        let bytes = [0u8, 127, 128, 255];
        assert_eq!(binarize_threshold(&bytes), [0.0, 0.0, 1.0, 1.0]);
        assert_eq!(scale_unit(&bytes), [0.0, 127.0 / 255.0, 128.0 / 255.0, 1.0]);
        assert_eq!(scale_symmetric(&[0, 255]), [-1.0, 1.0]);
        let many = vec![100u8; 10_000];
        let a = binarize_stochastic(&many, &mut Rng::new(3));
        assert_eq!(a, binarize_stochastic(&many, &mut Rng::new(3)));
        assert_ne!(a, binarize_stochastic(&many, &mut Rng::new(4)));
        let mean = a.iter().sum::<f32>() / a.len() as f32;
        assert!((mean - 100.0 / 255.0).abs() < 0.02, "{mean}");
        let edges = binarize_stochastic(&[0, 255, 0, 255], &mut Rng::new(5));
        assert_eq!(edges, [0.0, 1.0, 0.0, 1.0]);

        let m = embedded().unwrap();
        let batches: Vec<Vec<usize>> = Batches::shuffled(m.test.len(), 100, 1).collect();
        assert_eq!(batches.len(), 10);
        assert_eq!(Batches::shuffled(m.test.len(), 100, 1).len(), 10);
        assert_ne!(batches[0], (0..100).collect::<Vec<_>>());
        assert_ne!(
            batches,
            Batches::shuffled(m.test.len(), 100, 2).collect::<Vec<_>>()
        );
        let b = m.test.batch(&batches[9]);
        assert_eq!(b.len(), 99);
        assert_eq!(b.labels[0], m.test.labels[batches[9][0]]);
        let t = b.tensor(Pixels::Symmetric, &mut Rng::new(0)).unwrap();
        assert_eq!(t.shape(), &[99, 1, 28, 28]);
        let v = t.to_vec_f32();
        assert!(v.iter().all(|x| (-1.0..=1.0).contains(x)));
        assert!(v.contains(&-1.0) && v.contains(&1.0));
        assert_eq!(b.unit().unwrap().shape(), &[99, 1, 28, 28]);
        assert_eq!(m.test.head(5).len(), 5);
        let (first, rest) = m.test.split_at(990);
        assert_eq!((first.len(), rest.len()), (990, m.test.len() - 990));
        assert_eq!(rest.image(0), m.test.image(990));
        assert_eq!(rest.labels[0], m.test.labels[990]);
        assert_eq!(Batches::sequential(3, 0).count(), 3);
    }

    #[test]
    fn load_dir_reports_missing_and_mismatched_files() {
        let dir = std::env::temp_dir().join(format!("genzoo-idx-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(load_dir(&dir)
            .unwrap_err()
            .to_string()
            .contains("train-images-idx3-ubyte"));
        std::fs::write(
            dir.join("train-images-idx3-ubyte"),
            idx_bytes(&[2, 1, 1], &[0, 1]),
        )
        .unwrap();
        std::fs::write(
            dir.join("train-labels-idx1-ubyte"),
            idx_bytes(&[3], &[0, 1, 2]),
        )
        .unwrap();
        std::fs::write(
            dir.join("t10k-images-idx3-ubyte"),
            idx_bytes(&[1, 1, 1], &[0]),
        )
        .unwrap();
        std::fs::write(dir.join("t10k-labels-idx1-ubyte"), idx_bytes(&[1], &[4])).unwrap();
        let e = load_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("3 labels for 2 images"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
