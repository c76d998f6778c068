//! Label selectors (`matchLabels` and `matchExpressions`), validated as the
//! API server's `LabelSelectorAsSelector` does.

use std::collections::BTreeMap;

use crate::api::LabelSelectorRequirement;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A compiled label selector. An empty selector selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selector {
    labels: BTreeMap<String, String>,
    exprs: Vec<(String, Op, Vec<String>)>,
}

impl Selector {
    /// Compiles `matchLabels` and `matchExpressions`. In and NotIn need
    /// values; Exists and DoesNotExist take none; other operators are errors.
    pub fn new(
        match_labels: Option<&BTreeMap<String, String>>,
        match_expressions: Option<&[LabelSelectorRequirement]>,
    ) -> Result<Selector, String> {
        let mut exprs = Vec::new();
        for req in match_expressions.unwrap_or_default() {
            let values = req.values.clone().unwrap_or_default();
            let op = match req.operator.as_str() {
                "In" => Op::In,
                "NotIn" => Op::NotIn,
                "Exists" => Op::Exists,
                "DoesNotExist" => Op::DoesNotExist,
                other => return Err(format!("{other:?} is not a valid label selector operator")),
            };
            match op {
                Op::In | Op::NotIn if values.is_empty() => {
                    return Err(format!(
                        "key {:?}: values must be non-empty for operator {}",
                        req.key, req.operator
                    ));
                }
                Op::Exists | Op::DoesNotExist if !values.is_empty() => {
                    return Err(format!(
                        "key {:?}: values must be empty for operator {}",
                        req.key, req.operator
                    ));
                }
                _ => {}
            }
            exprs.push((req.key.clone(), op, values));
        }
        Ok(Selector {
            labels: match_labels.cloned().unwrap_or_default(),
            exprs,
        })
    }

    /// A selector from a plain label map (`matchLabels` only).
    pub fn from_labels(labels: &BTreeMap<String, String>) -> Selector {
        Selector {
            labels: labels.clone(),
            exprs: Vec::new(),
        }
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.exprs.iter().all(|(key, op, values)| {
                let value = labels.get(key);
                match op {
                    Op::In => value.is_some_and(|v| values.contains(v)),
                    Op::NotIn => value.is_none_or(|v| !values.contains(v)),
                    Op::Exists => value.is_some(),
                    Op::DoesNotExist => value.is_none(),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: op.to_string(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn operators() {
        let obj = labels(&[("app", "web"), ("tier", "frontend")]);
        let rows: &[(LabelSelectorRequirement, bool)] = &[
            (req("app", "In", &["web", "api"]), true),
            (req("app", "In", &["api"]), false),
            (req("missing", "In", &["x"]), false),
            (req("app", "NotIn", &["api"]), true),
            (req("app", "NotIn", &["web"]), false),
            (req("missing", "NotIn", &["x"]), true),
            (req("tier", "Exists", &[]), true),
            (req("missing", "Exists", &[]), false),
            (req("missing", "DoesNotExist", &[]), true),
            (req("tier", "DoesNotExist", &[]), false),
        ];
        for (r, want) in rows {
            let s = Selector::new(None, Some(std::slice::from_ref(r))).expect("valid");
            assert_eq!(s.matches(&obj), *want, "{r:?}");
        }
    }

    #[test]
    fn match_labels_and_expressions_are_anded() {
        let obj = labels(&[("app", "web"), ("tier", "frontend")]);
        let ml = labels(&[("app", "web")]);
        let s = Selector::new(Some(&ml), Some(&[req("tier", "In", &["frontend"])])).expect("valid");
        assert!(s.matches(&obj));
        let s = Selector::new(Some(&ml), Some(&[req("tier", "In", &["canary"])])).expect("valid");
        assert!(!s.matches(&obj));
        let s = Selector::new(Some(&labels(&[("app", "api")])), None).expect("valid");
        assert!(!s.matches(&obj));
    }

    #[test]
    fn empty_selects_everything() {
        let s = Selector::new(Some(&BTreeMap::new()), None).expect("valid");
        assert!(s.matches(&BTreeMap::new()));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn invalid_requirements() {
        for r in [
            req("app", "In", &[]),
            req("app", "NotIn", &[]),
            req("app", "Exists", &["x"]),
            req("app", "DoesNotExist", &["x"]),
            req("app", "Equals", &["x"]),
        ] {
            assert!(
                Selector::new(None, Some(std::slice::from_ref(&r))).is_err(),
                "{r:?}"
            );
        }
    }
}
