//! Progress bars of file transfers (`agentd run` downloading a step's inputs and
//! uploading its outputs, `agentd task create --attach`), drawn on stderr only when it is
//! a terminal: hidden in services, pipes and logs.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `total` bytes labelled `message`; hidden when stderr is not a terminal.
pub fn transfer(total: u64, message: String) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("the progress template is valid")
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}
