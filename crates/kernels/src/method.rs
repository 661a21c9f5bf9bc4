//! Method names, parsed once.
//!
//! The SQL functions take the method as a string; the binding layer turns it
//! into one of these enums at bind time with `str::parse`, and everything
//! below dispatches with an exhaustive `match`. The names live only here, so
//! the error for an unknown name and the list of valid names cannot drift
//! apart from what the kernels implement.

use std::fmt;
use std::str::FromStr;

use crate::error::KernelError;

/// First-order measure between two activation vectors (rows), used by
/// [`crate::corr::correlation_matrix`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrMethod {
    /// Pearson correlation over the columns; diagonal exactly 1.
    Pearson,
    /// Pearson correlation of the rows' average-tie ranks.
    Spearman,
    /// `x·y / (|x| |y|)`, no centring; diagonal exactly 1.
    Cosine,
    /// Euclidean distance `|x - y|`; diagonal exactly 0.
    Euclidean,
    /// Centred linear kernel `Xc Xcᵀ`, `Xc` = rows minus the per-column mean
    /// over the rows (the input of linear CKA).
    Gram,
}

impl CorrMethod {
    /// Every method, in documentation order.
    pub const ALL: [CorrMethod; 5] = [
        CorrMethod::Pearson,
        CorrMethod::Spearman,
        CorrMethod::Cosine,
        CorrMethod::Euclidean,
        CorrMethod::Gram,
    ];

    /// The lower-case name used in SQL.
    pub fn name(&self) -> &'static str {
        match self {
            CorrMethod::Pearson => "pearson",
            CorrMethod::Spearman => "spearman",
            CorrMethod::Cosine => "cosine",
            CorrMethod::Euclidean => "euclidean",
            CorrMethod::Gram => "gram",
        }
    }
}

impl fmt::Display for CorrMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CorrMethod {
    type Err = KernelError;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| KernelError::UnknownMethod {
                kind: "correlation",
                got: s.to_string(),
                valid: join_names(Self::ALL.iter().map(|m| m.name())),
            })
    }
}

/// Second-order comparison between two N x N matrices, used by
/// [`crate::compare`] and [`crate::resample`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CompareMethod {
    /// Pearson correlation of the strict upper triangles.
    Pearson,
    /// Spearman correlation (average-tie ranks) of the strict upper triangles.
    Spearman,
    /// Linear CKA of the double-centred full matrices.
    Cka,
    /// Debiased CKA: the unbiased HSIC estimator on U-centred matrices with
    /// zero diagonals (Kornblith et al.'s `cka(..., debiased=True)`).
    CkaDebiased,
    /// CKA of Gaussian (RBF) kernels made from euclidean distance matrices.
    CkaRbf,
    /// Orthogonal Procrustes similarity of the representations behind two
    /// Gram matrices.
    Procrustes,
    /// Mean overlap of each image's k = 10 nearest neighbours.
    MutualKnn,
}

impl CompareMethod {
    /// Every method, in documentation order.
    pub const ALL: [CompareMethod; 7] = [
        CompareMethod::Pearson,
        CompareMethod::Spearman,
        CompareMethod::Cka,
        CompareMethod::CkaDebiased,
        CompareMethod::CkaRbf,
        CompareMethod::Procrustes,
        CompareMethod::MutualKnn,
    ];

    /// The lower-case name used in SQL.
    pub fn name(&self) -> &'static str {
        match self {
            CompareMethod::Pearson => "pearson",
            CompareMethod::Spearman => "spearman",
            CompareMethod::Cka => "cka",
            CompareMethod::CkaDebiased => "cka_debiased",
            CompareMethod::CkaRbf => "cka_rbf",
            CompareMethod::Procrustes => "procrustes",
            CompareMethod::MutualKnn => "mutual_knn",
        }
    }

    /// Fewest keys (images) the method is defined for.
    pub fn min_rows(&self) -> usize {
        match self {
            CompareMethod::Cka | CompareMethod::CkaRbf | CompareMethod::Procrustes => 2,
            CompareMethod::Pearson | CompareMethod::Spearman | CompareMethod::MutualKnn => 3,
            // The unbiased HSIC divides by n (n - 3).
            CompareMethod::CkaDebiased => 4,
        }
    }

    /// Whether matrices made by `layer_corr` method `kind` are valid input,
    /// and if not, what is (in words, for the error message).
    pub fn accepts(&self, kind: CorrMethod) -> Result<(), &'static str> {
        use CorrMethod as K;
        match (self, kind) {
            (CompareMethod::Pearson | CompareMethod::Spearman | CompareMethod::MutualKnn, _) => {
                Ok(())
            }
            (CompareMethod::Cka | CompareMethod::CkaDebiased, K::Euclidean) => Err(
                "kernel (similarity) matrices: gram, pearson, spearman or cosine; for euclidean distances use cka_rbf",
            ),
            (CompareMethod::Cka | CompareMethod::CkaDebiased, _) => Ok(()),
            (CompareMethod::CkaRbf, K::Euclidean) => Ok(()),
            (CompareMethod::CkaRbf, _) => {
                Err("euclidean distance matrices (layer_corr(key, activation, 'euclidean'))")
            }
            (CompareMethod::Procrustes, K::Gram) => Ok(()),
            (CompareMethod::Procrustes, _) => {
                Err("gram matrices (layer_corr(key, activation, 'gram'))")
            }
        }
    }
}

impl fmt::Display for CompareMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for CompareMethod {
    type Err = KernelError;

    /// Case-insensitive, surrounding whitespace ignored.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Self::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| KernelError::UnknownMethod {
                kind: "comparison",
                got: s.to_string(),
                valid: join_names(Self::ALL.iter().map(|m| m.name())),
            })
    }
}

fn join_names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_case_insensitively() {
        for m in CorrMethod::ALL {
            assert_eq!(m.name().parse::<CorrMethod>().unwrap(), m);
            assert_eq!(m.name().to_uppercase().parse::<CorrMethod>().unwrap(), m);
        }
        for m in CompareMethod::ALL {
            assert_eq!(m.name().parse::<CompareMethod>().unwrap(), m);
            assert_eq!(
                format!(" {} ", m.name().to_uppercase())
                    .parse::<CompareMethod>()
                    .unwrap(),
                m
            );
        }
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = CorrMethod::ALL.iter().map(|m| m.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CorrMethod::ALL.len());
        let mut names: Vec<_> = CompareMethod::ALL.iter().map(|m| m.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CompareMethod::ALL.len());
    }

    #[test]
    fn unknown_name_lists_valid_names() {
        let err = "kendall".parse::<CorrMethod>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("'kendall'"), "{msg}");
        for m in CorrMethod::ALL {
            assert!(msg.contains(m.name()), "{msg}");
        }
        let msg = "rho-a".parse::<CompareMethod>().unwrap_err().to_string();
        assert!(msg.contains("'rho-a'") && msg.contains("cka"), "{msg}");
        assert!(
            msg.contains("cka_debiased") && msg.contains("mutual_knn"),
            "{msg}"
        );
    }

    #[test]
    fn matrix_kinds() {
        use CompareMethod as C;
        assert!(C::Procrustes.accepts(CorrMethod::Gram).is_ok());
        assert!(C::Procrustes.accepts(CorrMethod::Pearson).is_err());
        assert!(C::CkaRbf.accepts(CorrMethod::Euclidean).is_ok());
        assert!(C::CkaRbf.accepts(CorrMethod::Gram).is_err());
        assert!(C::Cka.accepts(CorrMethod::Euclidean).is_err());
        for k in CorrMethod::ALL {
            assert!(C::MutualKnn.accepts(k).is_ok());
            assert!(C::Pearson.accepts(k).is_ok());
        }
    }
}
