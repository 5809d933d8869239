//! One error type for the whole public API. Every variant names the op (or file) and says what is
//! wrong, with the shapes involved, so that a user can fix their call without reading our code.

use std::fmt;

/// What went wrong in a call; every variant names the op (or file) and says why.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Shapes that do not fit the op, e.g. "matmul: inner dimensions differ ([2, 3] vs [4, 5])".
    Shape {
        /// The op that failed.
        op: &'static str,
        /// What is wrong, with the values involved.
        msg: String,
    },
    /// Operands of different dtypes, or a dtype the op does not support.
    DType {
        /// The op that failed.
        op: &'static str,
        /// What is wrong, with the values involved.
        msg: String,
    },
    /// An index or axis out of range.
    Index {
        /// The op that failed.
        op: &'static str,
        /// What is wrong, with the values involved.
        msg: String,
    },
    /// A request the autograd engine cannot satisfy (e.g. backward from a non-scalar without a gradient).
    Grad {
        /// The op that failed.
        op: &'static str,
        /// What is wrong, with the values involved.
        msg: String,
    },
    /// An argument out of its domain (negative probability, zero-sized dimension where one is needed, ...).
    Invalid {
        /// The op that failed.
        op: &'static str,
        /// What is wrong, with the values involved.
        msg: String,
    },
    /// A file that could not be read or written, or whose content is wrong.
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// An output that does not fit in the memory left (host tensors over
    /// [`crate::set_host_memory_limit`]'s budget, or a CUDA device's memory exhausted).
    OutOfMemory {
        /// The op that failed.
        op: &'static str,
        /// What is wrong, with the values involved.
        msg: String,
    },
}

impl Error {
    /// An [`Error::Shape`] of `op`.
    pub fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape {
            op,
            msg: msg.into(),
        }
    }
    /// An [`Error::DType`] of `op`.
    pub fn dtype(op: &'static str, msg: impl Into<String>) -> Self {
        Error::DType {
            op,
            msg: msg.into(),
        }
    }
    /// An [`Error::Index`] of `op`.
    pub fn index(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Index {
            op,
            msg: msg.into(),
        }
    }
    /// An [`Error::Grad`] of `op`.
    pub fn grad(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Grad {
            op,
            msg: msg.into(),
        }
    }
    /// An [`Error::Invalid`] of `op`.
    pub fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid {
            op,
            msg: msg.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shape { op, msg } => write!(f, "{op}: shape error: {msg}"),
            Error::DType { op, msg } => write!(f, "{op}: dtype error: {msg}"),
            Error::Index { op, msg } => write!(f, "{op}: index error: {msg}"),
            Error::Grad { op, msg } => write!(f, "{op}: autograd error: {msg}"),
            Error::Invalid { op, msg } => write!(f, "{op}: invalid argument: {msg}"),
            Error::Io { path, msg } => write!(f, "{path}: {msg}"),
            Error::OutOfMemory { op, msg } => write!(f, "{op}: out of memory: {msg}"),
        }
    }
}

impl std::error::Error for Error {}

/// The result of every fallible call in the crate.
pub type Result<T> = std::result::Result<T, Error>;
