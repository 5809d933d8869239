//! How much of a digit its three Puzzle-GAN patches tell, read by a supervised reader
//! ([`PatchReader`]): G's part encoder and a head (linear, or with HIDDEN units), trained on the training digits'
//! patches, measured on the test digits' patches (the boxes `genzoo eval puzzle-gan` cuts).
//! Two views: the patches as G gets them (resized, positions lost) and in place (positions
//! kept). The first bounds, from below, the most any completion can keep of the digit.
//!
//! `cargo run --release -p models --example puzzle_patch_reader -- [EPOCHS] [SEED] [HIDDEN]`

use autograd::Rng;
use models::adversarial::puzzle_gan::{PatchReader, PatchView};
use models::program::data;

fn main() -> autograd::Result<()> {
    let mut args = std::env::args().skip(1);
    let epochs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(15);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    // the head's hidden width: 0 for a linear head
    let hidden: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(0);
    let digits = data::embedded()?;
    for view in [PatchView::Resized, PatchView::InPlace] {
        let mut rng = Rng::new(seed);
        let mut reader = PatchReader::new(view, hidden, 1e-3, &mut rng)?;
        let start = std::time::Instant::now();
        for epoch in 1..=epochs {
            // cosine decay from 1e-3 to 0, so the last epochs settle
            let t = (epoch - 1) as f64 / epochs as f64;
            reader.set_lr(1e-3 * 0.5 * (1.0 + (std::f64::consts::PI * t).cos()))?;
            let loss = reader.train_epoch(&digits.train, 64, &mut rng)?;
            let acc = reader.test_accuracy(&digits.test)?;
            println!(
                "{view:?} epoch {epoch:2}: train loss {loss:.4}, test digits read {:.1}% ({:.0} s)",
                100.0 * acc,
                start.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}
