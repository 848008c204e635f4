//! `ErrorChain`: an error with every cause under it, on one line, for logs and the
//! command line.
//!
//! wsgate's error enums keep their causes: `Display` says what failed (naming the
//! file, backend or key), `source()` gives the error beneath, and no cause shows in
//! both. Owns: joining them back. Does not own: any error type.

use std::error::Error;
use std::fmt;

/// An error and every cause under it (`source()`, then its source...), on one line
/// joined by ": ": what logs and the command line print. A cause whose text the
/// line already ends with is not repeated (some libraries put their source in their
/// own message too).
pub struct ErrorChain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last = self.0.to_string();
        f.write_str(&last)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            let text = e.to_string();
            if !text.is_empty() && !last.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            last = text;
            next = e.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
