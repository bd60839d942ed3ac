//! The catalog service on the coordinator shard: the one writer of the catalog file (topics,
//! partitions, their shards and configs). Changes run one at a time, on the blocking pool
//! (they fsync); after each, a new `TopicTable` is built for every shard to read
//! (`topics.rs`). The order of a change — persist, open or drop partitions, publish — is
//! `admin.rs`'s.

use std::cell::RefCell;

use engine::catalog::{Catalog, CatalogError};
use glommio::sync::{Permit, Semaphore};

use crate::error::AdminError;
use crate::topics::TopicTable;

pub struct CatalogService {
    /// `None` only while a change runs on the blocking pool.
    catalog: RefCell<Option<Catalog>>,
    /// One change at a time, from start (persist) to end (publish).
    changes: Semaphore,
}

impl CatalogService {
    pub fn new(catalog: Catalog) -> CatalogService {
        CatalogService { catalog: RefCell::new(Some(catalog)), changes: Semaphore::new(1) }
    }

    /// Held for the whole of one change.
    pub async fn begin(&self) -> Result<Permit<'_>, AdminError> {
        self.changes.acquire_permit(1).await.map_err(|_| AdminError::Storage { reason: "shutting down".into() })
    }

    /// Applies `change` to the catalog on the blocking pool (it writes and fsyncs the file),
    /// and returns its result with the topic table after it.
    pub async fn change<T: Send + 'static>(
        &self,
        change: impl FnOnce(&mut Catalog) -> Result<T, CatalogError> + Send + 'static,
    ) -> Result<(T, TopicTable), AdminError> {
        let Some(mut catalog) = self.catalog.borrow_mut().take() else {
            return Err(AdminError::Storage { reason: "catalog busy".into() });
        };
        let (catalog, result) = glommio::executor()
            .spawn_blocking(move || {
                let result = change(&mut catalog);
                (catalog, result)
            })
            .await;
        let table = TopicTable::from_catalog(&catalog);
        *self.catalog.borrow_mut() = Some(catalog);
        Ok((result?, table))
    }
}
