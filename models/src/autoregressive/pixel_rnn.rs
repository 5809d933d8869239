//! PixelRNN: the Row LSTM and the Diagonal BiLSTM (van den Oord, Kalchbrenner & Kavukcuoglu
//! 2016, "Pixel Recurrent Neural Networks", sections 3.1-3.2 and 3.4), for binary images.
//!
//! As in PixelCNN, p(x) = prod_i p(x_i | x_<i) in raster order, and all conditionals come from
//! one pass over the image; here the layers are two-dimensional LSTMs. With h the hidden units,
//! the residual stream between layers has 2h channels:
//!
//! ```text
//!   r_0 = MaskA_7x7(x)                                    pixel i unseen, as in PixelCNN
//!   r_l = r_(l-1) + 1x1(h_l)                              h_l: the LSTM layer's output (h channels)
//!   logit = 1x1(ReLU(1x1(ReLU(r_L))))                     p(x_i = 1 | x_<i) = sigmoid(logit_i)
//! ```
//!
//! Each LSTM layer computes, for a whole row (Row LSTM) or column (Diagonal BiLSTM) at once,
//!
//! ```text
//!   [o, f, i, g]_j = sigma(K_ss * h_(j-1) + K_is * r_(l-1))_j      (tanh for g, the fused cell)
//!   c_j = f . c_(j-1) + i . g          h_j = o . tanh(c_j)
//! ```
//!
//! - Row LSTM (section 3.1): j runs over the rows, top to bottom. K_is is a 1x3 mask-B
//!   convolution along the row (a position reads itself and its left neighbour in the layer
//!   below), computed for the whole map at once; K_ss a 1x3 convolution along the previous
//!   row's state (unmasked: that row is in the past). A position's state sees a triangle above
//!   it, widening by one column each way per row.
//! - Diagonal BiLSTM (section 3.2): the map is skewed (row i moved i to the right, width
//!   W + H - 1), so that the diagonals become columns; j runs over those, left to right. K_is is
//!   1x1 (mask B), K_ss a 2x1 convolution over the previous column: in the image, a position
//!   reads the states of its left neighbour and of the position above (and the cell of its left
//!   neighbour), so it sees everything above and left of it. A second LSTM does the same on the
//!   mirrored map (right neighbour and above); its output is shifted down one row, because a
//!   position's right-to-left state has seen the rest of its own row, and the two are added
//!   before the 1x1 back to the residual stream. Together: the whole context x_<i.
//!
//! K_is runs as one convolution over the whole map; the recurrence of each layer (and
//! direction) is one op of the engine, [`Tensor::grid_lstm`], which sweeps rows or anti-diagonals (the skewed
//! map's columns, without building it) with the engine's fused LSTM cell kernels (PyTorch's
//! gate order i, f, g, o), and is tested against the skew / scan / unskew / mirror formulation
//! written in Tensor ops.
//!
//! Sampling runs the network one position at a time over cached activations, as PixelCNN's
//! does: every state at (r, c) depends only on pixels before (r, c), except the right-to-left
//! states of the Diagonal BiLSTM, which are used one row later and are computed for a whole row,
//! right to left, as soon as that row is finished. A pixel costs one column of the network.

use crate::autoregressive::{
    self, logits_image, Cache, Known, Levels, LikelihoodModel, Pointwise, TapConv,
};
use crate::model::{Entry, Family, Preset};
use crate::program::data::Pixels;
use autograd::nn::{self, Conv2d, MaskedConv2d, Module};
use autograd::optim::{Adam, AdamConfig};
use autograd::{Conv2dOptions, DType, Error, Mask, Result, Rng, Sweep, Tensor};
use serde::{Deserialize, Serialize};

const PAPER: &str =
    "van den Oord, Kalchbrenner & Kavukcuoglu 2016, Pixel Recurrent Neural Networks";

pub static ROW_ENTRY: Entry = Entry {
    name: "row-lstm",
    title: "PixelRNN Row LSTM: 7x7 mask-A conv, LSTM layers along the rows (1x3 convs), 1x1 head",
    paper: PAPER,
    family: Family::Likelihood,
    default_epochs: 3,
    default_batch_size: 32,
    default_config: || serde_json::to_value(PixelRnnConfig::row_lstm()).unwrap_or_default(),
    build: |cfg, rng| {
        Ok(Box::new(PixelRnn::new(
            Kind::RowLstm,
            ROW_ENTRY.parse_config(cfg)?,
            rng,
        )?))
    },
    presets: &[
        Preset {
            name: "paper",
            about:
                "van den Oord et al. 2016, MNIST: 7 Row LSTM layers of h = 16, 20 epochs; about 35 min (estimated from step times)",
            config: r#"{"layers": 7, "hidden": 16}"#,
            epochs: 20,
            batch_size: 32,
            patience: None,
        },
        Preset {
            name: "grey",
            about: "8-bit grey digits, a 256-way softmax per pixel: 5 layers of h = 32, head 64 (219,520 parameters, beside pixelcnn --preset grey's 208,640), early-stopped; about 110 s an epoch",
            config: r#"{"layers": 5, "hidden": 32, "head": 64, "levels": 256}"#,
            epochs: 30,
            batch_size: 32,
            patience: Some(3),
        },
    ],
};

pub static DIAGONAL_ENTRY: Entry = Entry {
    name: "diagonal-bilstm",
    title: "PixelRNN Diagonal BiLSTM: 7x7 mask-A conv, LSTM layers along both diagonals, 1x1 head",
    paper: PAPER,
    family: Family::Likelihood,
    default_epochs: 3,
    default_batch_size: 32,
    default_config: || serde_json::to_value(PixelRnnConfig::diagonal_bilstm()).unwrap_or_default(),
    build: |cfg, rng| {
        Ok(Box::new(PixelRnn::new(
            Kind::DiagonalBiLstm,
            DIAGONAL_ENTRY.parse_config(cfg)?,
            rng,
        )?))
    },
    presets: &[
        Preset {
            name: "paper",
            about: "van den Oord et al. 2016, MNIST: 7 Diagonal BiLSTM layers of h = 16, 20 epochs; about 50 min (estimated from step times)",
            config: r#"{"layers": 7, "hidden": 16}"#,
            epochs: 20,
            batch_size: 32,
            patience: None,
        },
        Preset {
            name: "grey",
            about: "8-bit grey digits, a 256-way softmax per pixel: 5 layers of h = 32, head 64 (199,680 parameters, beside pixelcnn --preset grey's 208,640), early-stopped; about 220 s an epoch",
            config: r#"{"layers": 5, "hidden": 32, "head": 64, "levels": 256}"#,
            epochs: 30,
            batch_size: 32,
            patience: Some(3),
        },
    ],
};

/// Which PixelRNN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    RowLstm,
    DiagonalBiLstm,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::RowLstm => ROW_ENTRY.name,
            Kind::DiagonalBiLstm => DIAGONAL_ENTRY.name,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PixelRnnConfig {
    pub lr: f64,
    /// h, the hidden units of every LSTM layer (4h gate pre-activations); the residual stream
    /// between the layers has 2h channels.
    pub hidden: usize,
    /// LSTM layers, each added to the residual stream.
    pub layers: usize,
    /// Channels of the hidden 1x1 layer of the output head.
    pub head: usize,
    /// Images are `image_size` x `image_size` (28 for MNIST).
    pub image_size: usize,
    /// How training images become binary. The fixed threshold by default, the form the test
    /// uses: early-stopped, the Row LSTM gives 69.81 nats on the test digits where stochastic
    /// binarisation gives 75.70, the Diagonal BiLSTM 63.96 where it gives 74.16 (README.md has
    /// the comparison). Evaluation always uses the threshold. Unused for grey levels.
    pub pixels: Pixels,
    /// Values per pixel: 2, binary (a Bernoulli per pixel); K in 3..=256, grey levels (a
    /// K-way softmax per pixel, the paper's 256-way for K = 256). See
    /// [`autoregressive::levels`].
    pub levels: usize,
}

impl PixelRnnConfig {
    /// The Row LSTM's defaults.
    pub fn row_lstm() -> Self {
        PixelRnnConfig {
            lr: 2e-3,
            hidden: 16,
            layers: 2,
            head: 32,
            image_size: autoregressive::default_image_size(),
            pixels: Pixels::Threshold,
            levels: 2,
        }
    }

    /// The Diagonal BiLSTM's defaults.
    pub fn diagonal_bilstm() -> Self {
        PixelRnnConfig {
            hidden: 16,
            layers: 2,
            ..PixelRnnConfig::row_lstm()
        }
    }
}

impl Default for PixelRnnConfig {
    fn default() -> Self {
        PixelRnnConfig::row_lstm()
    }
}

// ----- the layers, as trained: whole rows / columns at once -------------------------------------

/// A convolution weight [out, in, kh, kw] as the matrix [kh * kw * in, out] that multiplies its
/// taps' inputs laid side by side (tap-major, the order of [`TapConv`]).
fn tap_matrix(w: &Tensor) -> Result<Tensor> {
    let s = w.shape();
    w.permute(&[2, 3, 1, 0])?
        .reshape(&[s[2] * s[3] * s[1], s[0]])
}

/// One Row LSTM layer (section 3.1).
struct RowLstm {
    /// K_is: 1x3 mask B along the row, 2h -> 4h, with the gates' bias.
    input_to_state: MaskedConv2d,
    /// K_ss: 1x3 along the previous row's state, h -> 4h, unmasked, no bias.
    state_to_state: Conv2d,
    /// 1x1, h -> 2h, into the residual stream.
    output: Conv2d,
}

impl RowLstm {
    fn new(hidden: usize, rng: &mut Rng) -> Result<RowLstm> {
        let (f, along_row) = (
            DType::F32,
            Conv2dOptions::default().padding_sides(0, 0, 1, 1),
        );
        Ok(RowLstm {
            input_to_state: MaskedConv2d::new(
                2 * hidden,
                4 * hidden,
                (1, 3),
                Mask::B,
                along_row.clone(),
                true,
                f,
                rng,
            )?,
            state_to_state: Conv2d::new(hidden, 4 * hidden, (1, 3), along_row, false, f, rng)?,
            output: Conv2d::new(
                hidden,
                2 * hidden,
                (1, 1),
                Conv2dOptions::default(),
                true,
                f,
                rng,
            )?,
        })
    }

    /// The LSTM's output h [B, h, H, W] for the residual stream r [B, 2h, H, W]: K_is * r for
    /// the whole map at once, then the rows in turn ([`Tensor::grid_lstm`]).
    fn forward(&self, r: &Tensor) -> Result<Tensor> {
        let pre = self.input_to_state.forward(r)?.permute(&[0, 2, 3, 1])?;
        let w = tap_matrix(&self.state_to_state.weight)?;
        Tensor::grid_lstm(&pre.contiguous()?, &w, Sweep::Rows)?.permute(&[0, 3, 1, 2])
    }
}

impl Module for RowLstm {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("input_to_state", &self.input_to_state as &dyn Module),
                ("state_to_state", &self.state_to_state),
                ("output", &self.output),
            ],
            |m| m.named_parameters(),
        )
    }
}

/// One direction of a Diagonal BiLSTM layer: the column LSTM over the skewed map.
struct Diagonal {
    /// K_is: 1x1 (mask B, which for one colour channel masks nothing), 2h -> 4h, with the
    /// gates' bias.
    input_to_state: Conv2d,
    /// K_ss: 2x1 over the previous column of the skewed map (rows i - 1 and i), h -> 4h, no
    /// bias.
    state_to_state: Conv2d,
}

impl Diagonal {
    fn new(hidden: usize, rng: &mut Rng) -> Result<Diagonal> {
        let f = DType::F32;
        Ok(Diagonal {
            input_to_state: Conv2d::new(
                2 * hidden,
                4 * hidden,
                (1, 1),
                Conv2dOptions::default(),
                true,
                f,
                rng,
            )?,
            state_to_state: Conv2d::new(
                hidden,
                4 * hidden,
                (2, 1),
                Conv2dOptions::default().padding_sides(1, 0, 0, 0),
                false,
                f,
                rng,
            )?,
        })
    }

    /// This direction's output h [B, H, W, h] (channels last) for the residual stream
    /// r [B, 2h, H, W]: K_is * r, then the diagonals in turn ([`Tensor::grid_lstm`], which sweeps the
    /// columns of the skewed map without building it).
    fn forward(&self, r: &Tensor, sweep: Sweep) -> Result<Tensor> {
        let pre = self.input_to_state.forward(r)?.permute(&[0, 2, 3, 1])?;
        let w = tap_matrix(&self.state_to_state.weight)?;
        Tensor::grid_lstm(&pre.contiguous()?, &w, sweep)
    }
}

impl Module for Diagonal {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("input_to_state", &self.input_to_state as &dyn Module),
                ("state_to_state", &self.state_to_state),
            ],
            |m| m.named_parameters(),
        )
    }
}

/// One Diagonal BiLSTM layer (section 3.2).
struct DiagonalBiLstm {
    left: Diagonal,
    right: Diagonal,
    /// 1x1, h -> 2h, into the residual stream.
    output: Conv2d,
}

impl DiagonalBiLstm {
    fn new(hidden: usize, rng: &mut Rng) -> Result<DiagonalBiLstm> {
        Ok(DiagonalBiLstm {
            left: Diagonal::new(hidden, rng)?,
            right: Diagonal::new(hidden, rng)?,
            output: Conv2d::new(
                hidden,
                2 * hidden,
                (1, 1),
                Conv2dOptions::default(),
                true,
                DType::F32,
                rng,
            )?,
        })
    }

    /// Left-to-right output plus the right-to-left one shifted down a row, [B, h, H, W].
    fn forward(&self, r: &Tensor) -> Result<Tensor> {
        let lr = self.left.forward(r, Sweep::DiagonalLeft)?;
        let rl = self.right.forward(r, Sweep::DiagonalRight)?;
        lr.add(&rl.shift(1, 1)?)?.permute(&[0, 3, 1, 2])
    }
}

impl Module for DiagonalBiLstm {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        nn::children(
            &[
                ("left", &self.left as &dyn Module),
                ("right", &self.right),
                ("output", &self.output),
            ],
            |m| m.named_parameters(),
        )
    }
}

enum Layer {
    Row(RowLstm),
    Diagonal(DiagonalBiLstm),
}

impl Layer {
    /// r + 1x1(h): the next residual stream.
    fn forward(&self, r: &Tensor) -> Result<Tensor> {
        let out = match self {
            Layer::Row(l) => l.output.forward(&l.forward(r)?)?,
            Layer::Diagonal(l) => l.output.forward(&l.forward(r)?)?,
        };
        r.add(&out)
    }

    fn module(&self) -> &dyn Module {
        match self {
            Layer::Row(l) => l,
            Layer::Diagonal(l) => l,
        }
    }
}

// ----- the model ---------------------------------------------------------------------------------

pub struct PixelRnn {
    kind: Kind,
    config: PixelRnnConfig,
    levels: Levels,
    input: MaskedConv2d,
    layers: Vec<Layer>,
    head1: Conv2d,
    head2: Conv2d,
    opt: Adam,
}

impl PixelRnn {
    pub fn new(kind: Kind, config: PixelRnnConfig, rng: &mut Rng) -> Result<PixelRnn> {
        let name = kind.name();
        autoregressive::check_image_size(name, config.image_size)?;
        let levels = Levels::new(name, config.levels)?;
        let c = &config;
        if c.hidden == 0 || c.hidden > 256 || c.head == 0 || c.head > 1024 || c.layers > 64 {
            return Err(Error::invalid(
                name,
                format!(
                    "hidden must be in 1..=256, head in 1..=1024 and layers at most 64, got {}, {} and {}",
                    c.hidden, c.head, c.layers
                ),
            ));
        }
        let f = DType::F32;
        let one = Conv2dOptions::default();
        let input = autoregressive::mask_a_input(2 * c.hidden, rng)?;
        let layers = (0..c.layers)
            .map(|_| {
                Ok(match kind {
                    Kind::RowLstm => Layer::Row(RowLstm::new(c.hidden, rng)?),
                    Kind::DiagonalBiLstm => Layer::Diagonal(DiagonalBiLstm::new(c.hidden, rng)?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let head1 = Conv2d::new(2 * c.hidden, c.head, (1, 1), one.clone(), true, f, rng)?;
        let head2 = Conv2d::new(c.head, levels.logits_per_pixel(), (1, 1), one, true, f, rng)?;
        let mut model = PixelRnn {
            kind,
            config: config.clone(),
            levels,
            input,
            layers,
            head1,
            head2,
            opt: Adam::new(Vec::<(String, Tensor)>::new(), AdamConfig::default())?,
        };
        model.opt = Adam::new(
            model.named_parameters(),
            AdamConfig {
                lr: config.lr,
                ..AdamConfig::default()
            },
        )?;
        Ok(model)
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The logits of every conditional, [B, L, H, W] for images x [B, 1, H, W] (L = 1 for
    /// binary pixels, K for K grey levels): one pass.
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        autoregressive::check_images(self.kind.name(), x, self.config.image_size)?;
        let mut r = self.input.forward(x)?;
        for layer in &self.layers {
            r = layer.forward(&r)?;
        }
        self.head2.forward(&self.head1.forward(&r.relu()?)?.relu()?)
    }
}

// ----- the layers at one position, for generation -----------------------------------------------

/// An LSTM's states and cells [n, s, s, h] and its convolutions at one position.
struct StateStep {
    /// K_is at one position (with the gates' bias).
    input_to_state: TapConv,
    /// K_ss at one position, its taps at their offsets in the image.
    state_to_state: TapConv,
    h: Cache,
    c: Cache,
}

impl StateStep {
    /// The LSTM at (r, c), its cell carried from the position `cell_from` away; returns h.
    fn at(
        &mut self,
        below: &Cache,
        r: usize,
        c: usize,
        cell_from: (isize, isize),
    ) -> Result<Tensor> {
        let gates = self
            .input_to_state
            .at(below, r, c)?
            .add(&self.state_to_state.at(&self.h, r, c)?)?;
        let c_prev = self
            .c
            .get(r as isize + cell_from.0, c as isize + cell_from.1)?;
        let (h, cell) = Tensor::lstm_cell_pointwise(&gates, &c_prev)?;
        self.h.set(r, c, &h);
        self.c.set(r, c, &cell);
        Ok(h)
    }
}

enum LayerStep {
    /// Row LSTM: state from the row above, cell from the position above.
    Row { lstm: StateStep, output: Pointwise },
    /// Diagonal BiLSTM: state from the left neighbour and the position above (cell from the
    /// left), and the mirrored one from the right neighbour and above (cell from the right).
    Diagonal {
        left: StateStep,
        right: StateStep,
        output: Pointwise,
    },
}

impl LayerStep {
    fn of(layer: &Layer, n: usize, s: usize, hidden: usize) -> Result<LayerStep> {
        let caches = || (Cache::new(n, s, hidden), Cache::new(n, s, hidden));
        Ok(match layer {
            Layer::Row(l) => {
                let (h, c) = caches();
                LayerStep::Row {
                    lstm: StateStep {
                        input_to_state: TapConv::of(
                            &l.input_to_state.weight,
                            l.input_to_state.bias.as_ref(),
                            Some(Mask::B),
                        )?,
                        state_to_state: TapConv::with_offsets(
                            &l.state_to_state.weight,
                            None,
                            &[(-1, -1), (-1, 0), (-1, 1)],
                        )?,
                        h,
                        c,
                    },
                    output: Pointwise::of(&l.output)?,
                }
            }
            Layer::Diagonal(l) => {
                // the 2x1 kernel's taps: row i - 1 and row i of the previous skewed column,
                // which in the image are the position above and the left (right) neighbour
                let direction = |d: &Diagonal, side: isize| -> Result<StateStep> {
                    let (h, c) = caches();
                    Ok(StateStep {
                        input_to_state: TapConv::of(
                            &d.input_to_state.weight,
                            d.input_to_state.bias.as_ref(),
                            None,
                        )?,
                        state_to_state: TapConv::with_offsets(
                            &d.state_to_state.weight,
                            None,
                            &[(-1, 0), (0, side)],
                        )?,
                        h,
                        c,
                    })
                };
                LayerStep::Diagonal {
                    left: direction(&l.left, -1)?,
                    right: direction(&l.right, 1)?,
                    output: Pointwise::of(&l.output)?,
                }
            }
        })
    }

    /// Row `r` of the residual stream below is complete: the Diagonal BiLSTM computes its
    /// right-to-left states on it, right to left (used from row r + 1 on).
    fn row_done(&mut self, below: &Cache, r: usize) -> Result<()> {
        if let LayerStep::Diagonal { right, .. } = self {
            for c in (0..below.size()).rev() {
                right.at(below, r, c, (0, 1))?;
            }
        }
        Ok(())
    }

    /// The layer's contribution 1x1(h) [n, 2h] to the residual stream at (r, c), given the
    /// stream below up to and including (r, c).
    fn at(&mut self, below: &Cache, r: usize, c: usize) -> Result<Tensor> {
        match self {
            LayerStep::Row { lstm, output } => output.apply(&lstm.at(below, r, c, (-1, 0))?),
            LayerStep::Diagonal {
                left,
                right,
                output,
            } => {
                let lr = left.at(below, r, c, (0, -1))?;
                let rl = right.h.get(r as isize - 1, c as isize)?;
                output.apply(&lr.add(&rl)?)
            }
        }
    }
}

impl Module for PixelRnn {
    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        let mut all = nn::prefixed("input", self.input.named_parameters());
        for (i, l) in self.layers.iter().enumerate() {
            all.extend(nn::prefixed(
                &format!("layers.{i}"),
                l.module().named_parameters(),
            ));
        }
        all.extend(nn::prefixed("head1", self.head1.named_parameters()));
        all.extend(nn::prefixed("head2", self.head2.named_parameters()));
        all
    }
}

impl LikelihoodModel for PixelRnn {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }

    fn weights(&self) -> Vec<(String, Tensor)> {
        self.named_parameters()
    }

    fn optimizer(&self) -> &Adam {
        &self.opt
    }

    fn optimizer_mut(&mut self) -> &mut Adam {
        &mut self.opt
    }

    fn training_pixels(&self) -> Pixels {
        self.config.pixels
    }

    fn levels(&self) -> Levels {
        self.levels
    }

    fn image_size(&self) -> usize {
        self.config.image_size
    }

    /// -log p(x) per image, nats, `[B]`.
    fn nll(&self, x: &Tensor) -> Result<Tensor> {
        self.levels
            .nll_per_image(self.kind.name(), &self.logits(x)?, x)
    }

    /// Pixel by pixel in raster order, computing the network one position at a time over
    /// cached activations; returns the images and the logits each pixel was drawn from.
    fn generate(&self, known: &Known, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
        let (n, d, s) = (known.n(), known.pixels(), self.config.image_size);
        let hidden = self.config.hidden;
        let input = TapConv::of(&self.input.weight, self.input.bias.as_ref(), Some(Mask::A))?;
        let mut layers = self
            .layers
            .iter()
            .map(|l| LayerStep::of(l, n, s, hidden))
            .collect::<Result<Vec<_>>>()?;
        let (head1, head2) = (Pointwise::of(&self.head1)?, Pointwise::of(&self.head2)?);
        // the image so far, and the residual stream r_0 .. r_(L-1), channels last
        let mut image = Cache::new(n, s, 1);
        let mut stream: Vec<Cache> = (0..layers.len())
            .map(|_| Cache::new(n, s, 2 * hidden))
            .collect();
        let mut logits = Vec::with_capacity(d);
        for i in 0..d {
            let (r, c) = (i / s, i % s);
            if c == 0 && r > 0 {
                for (layer, below) in layers.iter_mut().zip(&stream) {
                    layer.row_done(below, r - 1)?;
                }
            }
            let mut x = input.at(&image, r, c)?;
            for (layer, below) in layers.iter_mut().zip(stream.iter_mut()) {
                below.set(r, c, &x);
                x = x.add(&layer.at(below, r, c)?)?;
            }
            let logit = head2.apply(&head1.apply(&x.relu()?)?.relu()?)?;
            image.set(r, c, &known.next(i, &logit, rng)?);
            logits.push(logit);
        }
        Ok((
            Tensor::from_vec(image.data, &[n, 1, s, s])?,
            logits_image(&logits, n, s)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoregressive::checks;

    fn small(kind: Kind, size: usize, layers: usize) -> PixelRnn {
        small_with(kind, Levels::BINARY, size, layers)
    }

    fn small_with(kind: Kind, levels: Levels, size: usize, layers: usize) -> PixelRnn {
        PixelRnn::new(
            kind,
            PixelRnnConfig {
                image_size: size,
                hidden: 4,
                layers,
                head: 8,
                lr: 0.01,
                levels: levels.count(),
                ..PixelRnnConfig::default()
            },
            &mut Rng::new(4),
        )
        .unwrap()
    }

    #[test]
    fn row_lstm_autoregressive_through_gradients() {
        let m = small(Kind::RowLstm, 8, 2);
        checks::autoregressive(8, Levels::BINARY, |x| m.logits(x));
    }

    #[test]
    fn diagonal_bilstm_autoregressive_through_gradients() {
        // the right-to-left direction must not see the rest of the row: its down shift
        let m = small(Kind::DiagonalBiLstm, 8, 2);
        checks::autoregressive(8, Levels::BINARY, |x| m.logits(x));
    }

    #[test]
    fn probabilities_of_all_images_sum_to_one() {
        for kind in [Kind::RowLstm, Kind::DiagonalBiLstm] {
            let m = small(kind, 3, 2);
            checks::normalised(3, Levels::BINARY, |x| m.nll(x));
        }
    }

    #[test]
    fn fast_generation_matches_full_forward_passes() {
        for kind in [Kind::RowLstm, Kind::DiagonalBiLstm] {
            let m = small(kind, 6, 2);
            checks::generation_matches_full_passes(
                6,
                Levels::BINARY,
                |x| m.logits(x),
                |k, rng| m.generate(k, rng),
            );
        }
    }

    #[test]
    fn grey_levels_are_autoregressive_normalised_generated_exactly_and_learn() {
        let grey = |k| Levels::new("test", k).unwrap();
        for kind in [Kind::RowLstm, Kind::DiagonalBiLstm] {
            checks::grey_levels(
                |levels, size, layers| small_with(kind, levels, size, layers),
                |m, x| m.logits(x),
            );
            let mut m = small_with(kind, grey(256), 6, 1);
            checks::learns_and_samples(&mut m, 6, grey(256));
        }
    }

    #[test]
    fn learns_samples_and_completes() {
        for kind in [Kind::RowLstm, Kind::DiagonalBiLstm] {
            let mut m = small(kind, 6, 1);
            checks::learns_and_samples(&mut m, 6, Levels::BINARY);
            for bad in [
                PixelRnnConfig {
                    hidden: 0,
                    ..PixelRnnConfig::default()
                },
                PixelRnnConfig {
                    image_size: 0,
                    ..PixelRnnConfig::default()
                },
                PixelRnnConfig {
                    layers: 1000,
                    ..PixelRnnConfig::default()
                },
            ] {
                assert!(PixelRnn::new(kind, bad, &mut Rng::new(0)).is_err());
            }
        }
    }
}
