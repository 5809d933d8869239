//! The recurrences built on the LSTM cell: a sequence's sizes, and how a PixelRNN layer sweeps
//! its grid.

/// One LSTM layer over a sequence: x [steps, batch, input], hidden units per step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmSequenceShape {
    /// Time steps.
    pub steps: usize,
    /// Sequences run side by side.
    pub batch: usize,
    /// Features of each step's input.
    pub input: usize,
    /// Hidden (and cell) units.
    pub hidden: usize,
}

/// How an LSTM sweeps a grid of positions (a PixelRNN layer, van den Oord et al. 2016): which
/// earlier states feed each position's gates, and whose cell state it continues.
///
/// - `Rows` is the Row LSTM's recurrence: taps (r-1, c-1), (r-1, c), (r-1, c+1) (the 1x3
///   state-to-state convolution along the row above), cell from (r-1, c).
/// - `DiagonalLeft` is the Diagonal BiLSTM's: taps (r-1, c) and (r, c-1), which are rows i-1
///   and i of the previous column of the skewed map (its 2x1 convolution), cell from (r, c-1).
/// - `DiagonalRight` is the same on the mirrored image: taps (r-1, c) and (r, c+1), cell from
///   (r, c+1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sweep {
    /// The Row LSTM: one row at a time, each position reading three states of the row above.
    Rows,
    /// The Diagonal BiLSTM's left-to-right direction: anti-diagonals, reading above and left.
    DiagonalLeft,
    /// The Diagonal BiLSTM's mirrored direction: reading above and right.
    DiagonalRight,
}

impl Sweep {
    /// The (row, column) offsets of the states that the state-to-state weights read, in the
    /// order of the weights' blocks of rows.
    pub fn taps(self) -> &'static [(isize, isize)] {
        match self {
            Sweep::Rows => &[(-1, -1), (-1, 0), (-1, 1)],
            Sweep::DiagonalLeft => &[(-1, 0), (0, -1)],
            Sweep::DiagonalRight => &[(-1, 0), (0, 1)],
        }
    }

    /// The offset of the position whose cell state a position continues.
    pub fn cell_from(self) -> (isize, isize) {
        match self {
            Sweep::Rows => (-1, 0),
            Sweep::DiagonalLeft => (0, -1),
            Sweep::DiagonalRight => (0, 1),
        }
    }

    /// How many waves (rows, or anti-diagonals) cover a rows x cols grid.
    pub fn waves(self, rows: usize, cols: usize) -> usize {
        match self {
            Sweep::Rows => rows,
            _ => rows + cols - 1,
        }
    }

    /// The wave position (r, c) belongs to: every tap of a position lies in an earlier wave.
    pub fn wave(self, r: usize, c: usize, cols: usize) -> usize {
        match self {
            Sweep::Rows => r,
            Sweep::DiagonalLeft => r + c,
            Sweep::DiagonalRight => r + (cols - 1 - c),
        }
    }
}

/// A [`GridPlan`] source outside the grid (the state there is zero).
pub const NONE: usize = usize::MAX;

/// The schedule of a grid sweep over `b` images of rows x cols: the positions of all images
/// in wave order ("slots"), and where each slot's taps and cell
/// come from (slots of earlier waves, or [`NONE`] outside the grid).
pub struct GridPlan {
    /// Hidden units per position.
    pub hidden: usize,
    /// Taps per position (the length of [`Sweep::taps`]).
    pub taps: usize,
    /// slot -> flat position (b, r, c) in the grid
    pub order: Vec<usize>,
    /// wave w is slots `starts[w]..starts[w + 1]`
    pub starts: Vec<usize>,
    /// slot * taps + k -> the slot tap k reads
    pub tap_src: Vec<usize>,
    /// slot -> the slot whose cell it continues
    pub cell_src: Vec<usize>,
}

impl GridPlan {
    /// Plans `sweep` over `b` images of `rows` x `cols` positions with `hidden` units each.
    pub fn new(sweep: Sweep, b: usize, rows: usize, cols: usize, hidden: usize) -> GridPlan {
        let waves = sweep.waves(rows, cols);
        let mut buckets: Vec<Vec<usize>> = vec![Vec::new(); waves];
        for img in 0..b {
            for r in 0..rows {
                for c in 0..cols {
                    buckets[sweep.wave(r, c, cols)].push((img * rows + r) * cols + c);
                }
            }
        }
        let mut starts = Vec::with_capacity(waves + 1);
        let mut order = Vec::with_capacity(b * rows * cols);
        for bucket in buckets {
            starts.push(order.len());
            order.extend(bucket);
        }
        starts.push(order.len());
        let mut slot_of = vec![0; order.len()];
        for (slot, &p) in order.iter().enumerate() {
            slot_of[p] = slot;
        }
        let source = |p: usize, (dr, dc): (isize, isize)| {
            let (img, r, c) = (p / (rows * cols), (p / cols) % rows, p % cols);
            let (rr, cc) = (r as isize + dr, c as isize + dc);
            if rr < 0 || cc < 0 || rr >= rows as isize || cc >= cols as isize {
                NONE
            } else {
                slot_of[(img * rows + rr as usize) * cols + cc as usize]
            }
        };
        let taps = sweep.taps();
        let tap_src = order
            .iter()
            .flat_map(|&p| taps.iter().map(move |&t| (p, t)))
            .map(|(p, t)| source(p, t))
            .collect();
        let cell_src = order
            .iter()
            .map(|&p| source(p, sweep.cell_from()))
            .collect();
        GridPlan {
            hidden,
            taps: taps.len(),
            order,
            starts,
            tap_src,
            cell_src,
        }
    }

    /// The slot range of each wave, in order (double-ended: the backward pass walks them in reverse).
    pub fn waves(&self) -> impl DoubleEndedIterator<Item = std::ops::Range<usize>> + '_ {
        self.starts.windows(2).map(|w| w[0]..w[1])
    }

    /// The most slots in one wave.
    pub fn widest(&self) -> usize {
        self.waves().map(|w| w.len()).max().unwrap_or(0)
    }
}
