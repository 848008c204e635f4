//! Metric families whose values are read at scrape time (backend state, the
//! configuration generation, process figures), encoded with prometheus-client's
//! encoder so they follow the same text format rules as the registered metrics.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Counter or gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

pub(crate) type Labels = Vec<(&'static str, String)>;

/// One family: name (without `_total` or the unit), help, and its samples.
#[derive(Debug, Clone)]
pub struct Fam {
    name: &'static str,
    help: &'static str,
    kind: Kind,
    unit: Option<Unit>,
    samples: Vec<(Labels, f64)>,
}

impl Fam {
    pub fn push(&mut self, labels: Labels, v: f64) {
        self.samples.push((labels, v));
    }
}

impl Extend<(Labels, f64)> for Fam {
    fn extend<T: IntoIterator<Item = (Labels, f64)>>(&mut self, iter: T) {
        self.samples.extend(iter);
    }
}

/// Families built for one scrape.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    fams: Vec<Fam>,
}

impl Samples {
    /// A new family; fill it through the returned reference.
    pub fn family(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        unit: Option<Unit>,
    ) -> &mut Fam {
        self.fams.push(Fam {
            name,
            help,
            kind,
            unit,
            samples: Vec::new(),
        });
        let last = self.fams.len() - 1;
        &mut self.fams[last]
    }

    /// A family with one sample and no labels.
    pub fn single(
        &mut self,
        name: &'static str,
        help: &'static str,
        kind: Kind,
        unit: Option<Unit>,
        v: f64,
    ) {
        self.family(name, help, kind, unit).push(Vec::new(), v);
    }

    /// Appends the Prometheus text exposition of these families to `out`.
    pub fn encode_into(&self, out: &mut String) {
        let mut r = Registry::default();
        r.register_collector(Box::new(self.clone()));
        let _ = prometheus_client::encoding::prometheus_text::encode(out, &r);
    }
}

impl Collector for Samples {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in &self.fams {
            let t = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
            };
            let mut m = encoder.encode_descriptor(f.name, f.help, f.unit.as_ref(), t)?;
            for (labels, v) in &f.samples {
                let mut s = m.encode_family(labels)?;
                match f.kind {
                    Kind::Counter => s.encode_counter::<NoLabelSet, _, f64>(v, None)?,
                    Kind::Gauge => s.encode_gauge(v)?,
                }
            }
        }
        Ok(())
    }
}
