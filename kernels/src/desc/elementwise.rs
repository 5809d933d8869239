//! What an elementwise op computes: the unary and binary kinds, with their parameters.

/// Unary elementwise operations. Parameters travel with the variant.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryKind {
    /// -x
    Neg,
    /// e^x
    Exp,
    /// ln x
    Log,
    /// √x
    Sqrt,
    /// |x|
    Abs,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// tanh x
    Tanh,
    /// max(x, 0)
    Relu,
    /// max(x, 0) + slope * min(x, 0)
    LeakyRelu(f64),
    /// log(1 + e^x), computed stably
    Softplus,
    /// x for x > 0, alpha * (e^x - 1) otherwise
    Elu(f64),
    /// x^p
    Powf(f64),
    /// x clamped to [lo, hi]
    Clamp(f64, f64),
    /// x + c
    AddScalar(f64),
    /// x · c
    MulScalar(f64),
    /// 1 where x > 0, -1 where x < 0, 0 at 0
    Sign,
    /// 1 where x > c, else 0
    GtScalar(f64),
    /// 1 where lo <= x <= hi, else 0
    InRange(f64, f64),
}

impl UnaryKind {
    /// The op's name, as graph exports and error messages show it.
    pub fn name(&self) -> &'static str {
        match self {
            UnaryKind::Neg => "neg",
            UnaryKind::Exp => "exp",
            UnaryKind::Log => "log",
            UnaryKind::Sqrt => "sqrt",
            UnaryKind::Abs => "abs",
            UnaryKind::Sigmoid => "sigmoid",
            UnaryKind::Tanh => "tanh",
            UnaryKind::Relu => "relu",
            UnaryKind::LeakyRelu(_) => "leaky_relu",
            UnaryKind::Softplus => "softplus",
            UnaryKind::Elu(_) => "elu",
            UnaryKind::Powf(_) => "pow",
            UnaryKind::Clamp(..) => "clamp",
            UnaryKind::AddScalar(_) => "add_scalar",
            UnaryKind::MulScalar(_) => "mul_scalar",
            UnaryKind::Sign => "sign",
            UnaryKind::GtScalar(_) => "gt_scalar",
            UnaryKind::InRange(..) => "in_range",
        }
    }
}

/// Binary elementwise operations; both operands are broadcast to the output shape first.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinaryKind {
    /// a + b
    Add,
    /// a - b
    Sub,
    /// a · b
    Mul,
    /// a / b
    Div,
    /// max(a, b)
    Maximum,
    /// min(a, b)
    Minimum,
    /// 1 where a == b, else 0
    Eq,
    /// 1 where a > b, else 0
    Gt,
    /// 1 where a >= b, else 0
    Ge,
    /// 1 where a < b, else 0
    Lt,
    /// a where b > 0, slope * a elsewhere: the gradient a flowing back through
    /// leaky_relu(b) (ReLU for slope 0), in one pass instead of a mask and a product
    LeakyReluGrad(f64),
}

impl BinaryKind {
    /// The op's name, as graph exports and error messages show it.
    pub fn name(&self) -> &'static str {
        match self {
            BinaryKind::Add => "add",
            BinaryKind::Sub => "sub",
            BinaryKind::Mul => "mul",
            BinaryKind::Div => "div",
            BinaryKind::Maximum => "maximum",
            BinaryKind::Minimum => "minimum",
            BinaryKind::Eq => "eq",
            BinaryKind::Gt => "gt",
            BinaryKind::Ge => "ge",
            BinaryKind::Lt => "lt",
            BinaryKind::LeakyReluGrad(_) => "leaky_relu_grad",
        }
    }
}
