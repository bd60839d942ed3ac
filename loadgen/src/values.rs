//! Knob values written as text on the command line and in scenario files: byte sizes
//! (`128KiB`), message sizes (`1KiB`, `uniform:100-2000`) and rates (`max`, `50000`,
//! `50%-of-max`). Each parses from and prints to the same text, and serde uses that text, so a
//! scenario file and a report's `config` say things the way the command line does.

use std::fmt;
use std::str::FromStr;

/// Implements serde through `FromStr` / `Display`; numbers are accepted too (`rate = 5000`).
macro_rules! serde_via_str {
    ($t:ty, $expecting:literal) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $t;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$t, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<$t, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<$t, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<$t, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

/// A size in bytes: `100`, `4KiB`, `1MiB`, `2GiB` (binary) or `1KB`, `1MB`, `1GB` (decimal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

const UNITS: [(&str, u64); 7] = [
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1000),
    ("B", 1),
];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (number, multiplier) =
            UNITS.iter().find_map(|(unit, m)| text.strip_suffix(unit).map(|n| (n.trim(), *m))).unwrap_or((text, 1));
        let value: u64 = number.parse().map_err(|_| format!("`{text}` is not a size (e.g. 100, 4KiB, 1MiB)"))?;
        value.checked_mul(multiplier).map(ByteSize).ok_or_else(|| format!("`{text}` overflows 64 bits"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, m) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= m && self.0.is_multiple_of(m) {
                return write!(f, "{}{unit}", self.0 / m);
            }
        }
        write!(f, "{}", self.0)
    }
}

serde_via_str!(ByteSize, "a size such as 100, 4KiB or 1MiB");

/// Message (record value) size: fixed, or drawn uniformly from an inclusive range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSpec {
    Fixed(u32),
    Uniform { min_bytes: u32, max_bytes: u32 },
}

impl SizeSpec {
    pub fn max_bytes(&self) -> u32 {
        match *self {
            SizeSpec::Fixed(n) => n,
            SizeSpec::Uniform { max_bytes, .. } => max_bytes,
        }
    }

    pub fn mean_bytes(&self) -> f64 {
        match *self {
            SizeSpec::Fixed(n) => f64::from(n),
            SizeSpec::Uniform { min_bytes, max_bytes } => (f64::from(min_bytes) + f64::from(max_bytes)) / 2.0,
        }
    }
}

fn size_u32(text: &str) -> Result<u32, String> {
    let bytes = text.parse::<ByteSize>()?.0;
    u32::try_from(bytes).map_err(|_| format!("`{text}` is too large for a message"))
}

impl FromStr for SizeSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let Some(range) = text.strip_prefix("uniform:") else {
            return Ok(SizeSpec::Fixed(size_u32(text)?));
        };
        let (min, max) = range.split_once('-').ok_or_else(|| format!("`{text}`: expected uniform:MIN-MAX"))?;
        let (min_bytes, max_bytes) = (size_u32(min)?, size_u32(max)?);
        if min_bytes > max_bytes {
            return Err(format!("`{text}`: MIN is larger than MAX"));
        }
        Ok(SizeSpec::Uniform { min_bytes, max_bytes })
    }
}

impl fmt::Display for SizeSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SizeSpec::Fixed(n) => write!(f, "{}", ByteSize(u64::from(n))),
            SizeSpec::Uniform { min_bytes, max_bytes } => {
                write!(f, "uniform:{}-{}", ByteSize(u64::from(min_bytes)), ByteSize(u64::from(max_bytes)))
            }
        }
    }
}

serde_via_str!(SizeSpec, "a message size such as 1KiB or uniform:100-2000");

/// The target publish rate, over all producers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSpec {
    /// Closed loop: every producer sends as fast as its buffer allows; the acked rate is the
    /// highest rate the broker sustains (see docs/benchmarks.md, "`--rate max`").
    Max,
    /// Open loop at this many messages per second.
    Fixed { msg_per_s: f64 },
    /// A `--probe-s` closed-loop probe first, then open loop at this share of its rate.
    PercentOfMax { percent: f64 },
}

impl FromStr for RateSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text == "max" {
            return Ok(RateSpec::Max);
        }
        if let Some(percent) = text.strip_suffix("%-of-max") {
            let percent: f64 = percent.parse().map_err(|_| format!("`{text}`: expected P%-of-max"))?;
            if !(percent > 0.0 && percent <= 100.0) {
                return Err(format!("`{text}`: the percentage must be in (0, 100]"));
            }
            return Ok(RateSpec::PercentOfMax { percent });
        }
        let msg_per_s: f64 =
            text.parse().map_err(|_| format!("`{text}`: expected max, messages per second, or P%-of-max"))?;
        if !(msg_per_s.is_finite() && msg_per_s > 0.0) {
            return Err(format!("`{text}`: the rate must be positive"));
        }
        Ok(RateSpec::Fixed { msg_per_s })
    }
}

impl fmt::Display for RateSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateSpec::Max => f.write_str("max"),
            RateSpec::Fixed { msg_per_s } => write!(f, "{msg_per_s}"),
            RateSpec::PercentOfMax { percent } => write!(f, "{percent}%-of-max"),
        }
    }
}

serde_via_str!(RateSpec, "max, a rate in messages per second, or P%-of-max");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print_back() {
        for (text, bytes) in [("100", 100), ("4KiB", 4096), ("1MiB", 1 << 20), ("1KB", 1000), ("2 GiB", 2 << 30)] {
            assert_eq!(text.parse::<ByteSize>(), Ok(ByteSize(bytes)), "{text}");
        }
        assert_eq!(ByteSize(131072).to_string(), "128KiB");
        assert!("12x".parse::<ByteSize>().is_err());
        assert_eq!("uniform:100-2KiB".parse(), Ok(SizeSpec::Uniform { min_bytes: 100, max_bytes: 2048 }));
        assert!("uniform:9-1".parse::<SizeSpec>().is_err());
    }

    #[test]
    fn rates_parse_and_print_back() {
        for text in ["max", "5000", "50%-of-max", "12.5"] {
            assert_eq!(text.parse::<RateSpec>().map(|r| r.to_string()), Ok(text.to_owned()));
        }
        for bad in ["0", "-3", "0%-of-max", "150%-of-max", "fast"] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad}");
        }
    }
}
