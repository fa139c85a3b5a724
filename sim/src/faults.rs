//! The faults a run can inject, by name.

use std::fmt;

/// One kind of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Frames lost on the wire.
    Loss,
    /// Frames delivered twice.
    Duplicate,
    /// Some frames held back, so later ones overtake them.
    Reorder,
    /// Links cut: one node isolated, the nodes split in two, or links cut one by
    /// one and restored in random order ("swizzle"). Frames on a cut link are lost.
    Partition,
    /// A node crashes (its queued messages and state are lost) and restarts
    /// later as a new incarnation.
    Crash,
    /// Each node's clock is off by a fixed amount (up to ±250 ms).
    Skew,
    /// Small per-link queues: a full one refuses sends, as a ZeroMQ socket at
    /// its high-water mark does (`EAGAIN`).
    Overflow,
}

impl Fault {
    /// Every fault, in the order names are listed.
    pub const ALL: [Fault; 7] = [
        Fault::Loss,
        Fault::Duplicate,
        Fault::Reorder,
        Fault::Partition,
        Fault::Crash,
        Fault::Skew,
        Fault::Overflow,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Fault::Loss => "loss",
            Fault::Duplicate => "duplicate",
            Fault::Reorder => "reorder",
            Fault::Partition => "partition",
            Fault::Crash => "crash",
            Fault::Skew => "skew",
            Fault::Overflow => "overflow",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of faults.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Faults(u8);

impl Faults {
    /// No faults (latency and jitter only).
    pub const NONE: Faults = Faults(0);

    /// Every fault.
    pub fn all() -> Faults {
        Faults(Fault::ALL.iter().fold(0, |bits, fault| bits | fault.bit()))
    }

    /// Whether `fault` is in the set.
    pub fn has(self, fault: Fault) -> bool {
        self.0 & fault.bit() != 0
    }

    /// The set with `fault` added.
    pub fn with(self, fault: Fault) -> Faults {
        Faults(self.0 | fault.bit())
    }

    /// The faults in the set.
    pub fn iter(self) -> impl Iterator<Item = Fault> {
        Fault::ALL.into_iter().filter(move |fault| self.has(*fault))
    }

    /// Parses `all`, `none`, or a comma-separated list of fault names.
    pub fn parse(text: &str) -> Result<Faults, String> {
        match text.trim() {
            "all" => return Ok(Faults::all()),
            "none" | "" => return Ok(Faults::NONE),
            _ => {}
        }
        text.split(',')
            .map(str::trim)
            .try_fold(Faults::NONE, |faults, name| {
                Fault::ALL
                    .into_iter()
                    .find(|fault| fault.name() == name)
                    .map(|fault| faults.with(fault))
                    .ok_or_else(|| {
                        format!(
                            "unknown fault {name:?}: expected `all`, `none` or a comma-separated list of {}",
                            Fault::ALL.map(Fault::name).join(", ")
                        )
                    })
            })
    }
}

impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Faults::all() {
            return f.write_str("all");
        }
        if *self == Faults::NONE {
            return f.write_str("none");
        }
        let names: Vec<&str> = self.iter().map(Fault::name).collect();
        f.write_str(&names.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        assert_eq!(Faults::parse("all").unwrap(), Faults::all());
        assert_eq!(Faults::parse("none").unwrap(), Faults::NONE);
        let some = Faults::parse("crash, loss").unwrap();
        assert!(some.has(Fault::Crash) && some.has(Fault::Loss) && !some.has(Fault::Skew));
        assert_eq!(some.to_string(), "loss,crash");
        assert_eq!(Faults::parse(&some.to_string()).unwrap(), some);
        assert_eq!(Faults::all().to_string(), "all");
        let error = Faults::parse("loss,meteor").unwrap_err();
        assert!(
            error.contains("\"meteor\"") && error.contains("partition"),
            "{error}"
        );
    }
}
