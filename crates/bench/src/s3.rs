//! The object store's own throughput, measured with the same generated blobs as the registry
//! scenarios, so that a registry on S3 can be read against it: `s3-put` writes each blob as a
//! plain multipart upload (parts of `--s3-part-size`, one part in flight while the next is
//! produced, as Berth does) and `s3-get` streams it back. Credentials come from the usual AWS
//! environment variables.

use std::time::Instant;

use anyhow::{Context as _, Result};
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};

use crate::BenchArgs;
use crate::blob::BlobSpec;
use crate::report::{Meter, ScenarioResult, median};

pub struct S3Bench {
    store: AmazonS3,
    args: BenchArgs,
    run_id: String,
    written: Vec<(Path, u64)>,
}

impl S3Bench {
    pub fn new(args: &BenchArgs, run_id: &str) -> Result<S3Bench> {
        let endpoint = args
            .s3_endpoint
            .as_deref()
            .context("the s3 scenarios need --s3-endpoint")?;
        let bucket = args
            .s3_bucket
            .as_deref()
            .context("the s3 scenarios need --s3-bucket")?;
        let store = AmazonS3Builder::from_env()
            .with_endpoint(endpoint)
            .with_bucket_name(bucket)
            .with_region(&args.s3_region)
            .with_allow_http(true)
            .build()
            .context("configure the S3 client")?;
        Ok(S3Bench {
            store,
            args: args.clone(),
            run_id: run_id.to_owned(),
            written: Vec::new(),
        })
    }

    pub async fn put(&mut self, r: &mut ScenarioResult) -> Result<()> {
        let mut samples = Vec::new();
        let meter = Meter::start(&None);
        let t0 = Instant::now();
        for i in 0..self.args.repeat {
            let spec = BlobSpec::new(0x53_3000 + i as u64, self.args.blob_size);
            let path = Path::from(format!("berth-bench/{}/blob-{i}", self.run_id));
            let t = Instant::now();
            let upload = self.store.put_multipart(&path).await?;
            let mut w =
                WriteMultipart::new_with_chunk_size(upload, self.args.s3_part_size as usize);
            for piece in spec.pieces(0, spec.size()) {
                w.wait_for_capacity(1).await?;
                w.put(piece);
            }
            w.finish().await?;
            samples.push(spec.size() as f64 / 1e6 / t.elapsed().as_secs_f64());
            self.written.push((path, spec.size()));
        }
        meter.stop(r);
        r.transfer(
            self.args.blob_size * self.args.repeat as u64,
            t0.elapsed().as_secs_f64(),
        );
        r.metric = median(&samples);
        r.samples = samples;
        r.extra
            .insert("part_bytes".into(), self.args.s3_part_size.into());
        Ok(())
    }

    pub async fn get(&mut self, r: &mut ScenarioResult) -> Result<()> {
        if self.written.is_empty() {
            let mut ignored = ScenarioResult::new("s3-put", None, &self.run_id);
            self.put(&mut ignored).await?;
        }
        let mut samples = Vec::new();
        let mut total = 0;
        let meter = Meter::start(&None);
        let t0 = Instant::now();
        for (path, size) in &self.written {
            let t = Instant::now();
            let mut s = self.store.get(path).await?.into_stream();
            let mut n = 0u64;
            while let Some(c) = s.next().await {
                n += c?.len() as u64;
            }
            anyhow::ensure!(n == *size, "read {n} bytes of {size}");
            total += n;
            samples.push(n as f64 / 1e6 / t.elapsed().as_secs_f64());
        }
        meter.stop(r);
        r.transfer(total, t0.elapsed().as_secs_f64());
        r.metric = median(&samples);
        r.samples = samples;
        for (path, _) in &self.written {
            let _ = self.store.delete(path).await;
        }
        self.written.clear();
        Ok(())
    }
}
