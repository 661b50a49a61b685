//! agentd's one error type, with the process exit code each variant maps to.

/// Exit codes, documented in `agentd --help`.
pub mod exit_code {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other failure.
    pub const FAILURE: i32 = 1;
    /// The command line is wrong (clap's own code).
    pub const USAGE: i32 = 2;
    /// The configuration is missing or invalid, or agentd is not logged in.
    pub const CONFIG: i32 = 3;
    /// The hub rejected the agent token (unknown or revoked), or another instance of
    /// this agent took over the connection.
    pub const UNAUTHORIZED: i32 = 4;
    /// The hub could not be reached.
    pub const UNREACHABLE: i32 = 5;
    /// The hub refused the request (not found, forbidden, conflict, invalid).
    pub const REFUSED: i32 = 6;
    /// `run --once`: the step was executed but failed.
    pub const STEP_FAILED: i32 = 7;
}

/// Everything that can go wrong in agentd, phrased for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad or missing configuration; the message says what to run.
    #[error("{0}")]
    Config(String),
    /// The hub answered 401 (or closed the session with 4001).
    #[error(
        "the hub at {hub} rejected the agent token ({detail}); run `agentd login --hub {hub}` with a valid token"
    )]
    Unauthorized { hub: String, detail: String },
    /// Another session of the same agent replaced ours (close code 4005).
    #[error(
        "another agentd connected as this agent and replaced this one; stop the other instance first"
    )]
    Superseded,
    /// The hub could not be reached at all.
    #[error(
        "cannot reach the hub at {hub}: {detail}; check the URL and your network, or run `agentd login --hub URL`"
    )]
    Unreachable { hub: String, detail: String },
    /// The hub answered with an error envelope.
    #[error("the hub refused: {message} ({code}, HTTP {status})")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// A step executed by `run --once` failed.
    #[error("step failed: {0}")]
    StepFailed(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A configuration error with a message.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config(message.into())
    }

    /// Any other error with a message.
    pub fn other(message: impl Into<String>) -> Self {
        Error::Other(message.into())
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Config(_) => exit_code::CONFIG,
            Error::Unauthorized { .. } | Error::Superseded => exit_code::UNAUTHORIZED,
            Error::Unreachable { .. } => exit_code::UNREACHABLE,
            Error::Refused { .. } => exit_code::REFUSED,
            Error::StepFailed(_) => exit_code::STEP_FAILED,
            Error::Other(_) => exit_code::FAILURE,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Other(err.to_string())
    }
}
