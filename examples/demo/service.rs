//! The HTTP service: `GET /products/{id}` answers a product page as JSON, read through one of
//! three strategies, one per scenario. The cache holds the rendered page (`Bytes`), so a hit
//! costs neither SQLite nor rendering.

use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
#[cfg(feature = "redis")]
use cachet::tiered::{Raw, TieredCache};
use cachet::{Cache, CacheStats};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::db::{Db, DbError};
use crate::prices::Prices;

/// How the service reads a page.
pub enum Strategy {
    /// Every request queries the database.
    Uncached,
    /// `get_or_load_async`: a missing page is loaded once, however many requests wait for it.
    Coalescing(Cache<u64, Bytes>),
    /// Cache-aside without coalescing: `get`, and on a miss query and `insert`. Every request
    /// that misses runs its own query, even while another one is loading the same page.
    Naive(Cache<u64, Bytes>),
    /// Redis as the only cache: cache-aside over loopback (GET, and on a miss query and SET).
    #[cfg(feature = "redis")]
    RedisAside(crate::fleet::RedisAside),
    /// cachet in front of Redis: this instance's tiered cache.
    #[cfg(feature = "redis")]
    Tiered(TieredCache<u64, Bytes, Raw>),
}

/// Why a page could not be served.
#[derive(Debug)]
pub enum PageError {
    NotFound(u64),
    Db(DbError),
}

impl fmt::Display for PageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageError::NotFound(id) => write!(f, "no product {id}"),
            PageError::Db(e) => e.fmt(f),
        }
    }
}

/// The service's state: the database, its price changes and the read strategy. Cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    db: Db,
    prices: Prices,
    strategy: Arc<Strategy>,
}

impl Catalog {
    pub fn new(db: Db, strategy: Strategy) -> Self {
        Catalog::shared(db, Arc::new(strategy))
    }

    /// A catalog whose strategy (and cache) another catalog may share.
    pub fn shared(db: Db, strategy: Arc<Strategy>) -> Self {
        Catalog {
            db,
            prices: Prices::default(),
            strategy,
        }
    }

    /// The catalog with `prices`' changes applied to its pages.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub fn with_prices(mut self, prices: Prices) -> Self {
        self.prices = prices;
        self
    }

    /// The rendered page of product `id`, read through the strategy. Errors are shared (`Arc`)
    /// because a coalesced load hands the same error to every request waiting on it; they are
    /// never cached.
    pub async fn page(&self, id: u64) -> Result<Bytes, Arc<PageError>> {
        match &*self.strategy {
            Strategy::Uncached => self.load(id).await.map_err(Arc::new),
            Strategy::Coalescing(cache) => cache.get_or_load_async(&id, self.load(id)).await,
            Strategy::Naive(cache) => {
                if let Some(page) = cache.get(&id) {
                    return Ok(page);
                }
                let page = self.load(id).await.map_err(Arc::new)?;
                cache.insert(id, page.clone());
                Ok(page)
            }
            #[cfg(feature = "redis")]
            Strategy::RedisAside(redis) => redis.page(id, self.load(id)).await,
            #[cfg(feature = "redis")]
            Strategy::Tiered(cache) => cache.get_or_load(&id, self.load(id)).await,
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A snapshot of the cache's statistics; `None` without a cache.
    pub fn stats(&self) -> Option<CacheStats> {
        match &*self.strategy {
            Strategy::Uncached => None,
            Strategy::Coalescing(cache) | Strategy::Naive(cache) => Some(cache.stats()),
            #[cfg(feature = "redis")]
            Strategy::RedisAside(_) => None,
            #[cfg(feature = "redis")]
            Strategy::Tiered(cache) => Some(cache.stats().l1),
        }
    }

    /// One database query, with the price changes applied, rendered.
    async fn load(&self, id: u64) -> Result<Bytes, PageError> {
        match self.db.product_page(id).await {
            Ok(Some(mut page)) => {
                self.prices.apply(&mut page);
                Ok(Bytes::from(page.to_json()))
            }
            Ok(None) => Err(PageError::NotFound(id)),
            Err(e) => Err(PageError::Db(e)),
        }
    }
}

async fn product(State(catalog): State<Catalog>, Path(id): Path<u64>) -> Response {
    match catalog.page(id).await {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            let status = match *e {
                PageError::NotFound(_) => StatusCode::NOT_FOUND,
                PageError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            (status, e.to_string()).into_response()
        }
    }
}

/// A running service; [`stop`](Self::stop) shuts it down.
pub struct Server {
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

impl Server {
    /// Serves `catalog` on 127.0.0.1, on a port the OS picks.
    pub async fn start(catalog: Catalog) -> io::Result<Server> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        // Responses go out as soon as they are written: no Nagle delay on small pages.
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let app = Router::new()
            .route("/products/{id}", get(product))
            .with_state(catalog);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server { addr, stop, task })
    }

    /// Stops accepting connections and waits for the open ones to close (close the clients
    /// first).
    pub async fn stop(self) -> io::Result<()> {
        let _ = self.stop.send(());
        self.task.await.map_err(io::Error::other)?
    }
}
