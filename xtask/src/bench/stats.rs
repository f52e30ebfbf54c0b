//! Median and spread of repeated measurements.

use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(samples: &[f64]) -> Self {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return Self::default();
        }
        s.sort_by(f64::total_cmp);
        let mid = s.len() / 2;
        let median = if s.len().is_multiple_of(2) {
            (s[mid - 1] + s[mid]) / 2.0
        } else {
            s[mid]
        };
        Self {
            median,
            min: s[0],
            max: s[s.len() - 1],
            n: s.len(),
        }
    }
}

/// `x / base` for each repetition that has both samples (repetition, value), as a spread.
pub fn paired_ratios(x: &[(usize, f64)], base: &[(usize, f64)]) -> Spread {
    let ratios: Vec<f64> = x
        .iter()
        .filter_map(|&(rep, v)| {
            let (_, b) = base.iter().find(|(r, _)| *r == rep)?;
            (*b > 0.0 && v > 0.0).then(|| v / b)
        })
        .collect();
    Spread::of(&ratios)
}

#[cfg(test)]
mod tests {
    use super::{Spread, paired_ratios};

    #[test]
    fn median_of_odd_and_even_counts_and_empty() {
        let s = Spread::of(&[3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[4.0, 1.0, 2.0, 3.0]).median, 2.5);
        assert_eq!(Spread::of(&[f64::NAN, 5.0]).n, 1);
        assert_eq!(Spread::of(&[]).n, 0);
    }

    #[test]
    fn ratios_pair_runs_of_the_same_repetition() {
        // Repetition 1 ran on a slow machine for both; repetition 2 has no bare sample.
        let bare = [(0, 10.0), (1, 20.0), (3, 10.0)];
        let mon = [(0, 11.0), (1, 21.0), (2, 50.0), (3, 10.0)];
        let r = paired_ratios(&mon, &bare);
        assert_eq!(r.n, 3);
        assert_eq!((r.median, r.min, r.max), (1.05, 1.0, 1.1));
        assert_eq!(paired_ratios(&mon, &[]).n, 0);
    }
}
