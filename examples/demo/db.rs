//! The query layer: an SQLite product catalog (categories, products, reviews), generated once
//! into a file and reused, a small pool of read-only connections, and the product-page query
//! that the service caches.
//!
//! The page query is deliberately realistic rather than trivial: besides the product row and its
//! category (a join), it aggregates the ratings of every product in the same category to rank
//! the product within it, and fetches the latest reviews. The category aggregate is what makes it
//! cost about a millisecond; [`PRODUCTS_PER_CATEGORY`] tunes that cost.

use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use tokio::sync::Semaphore;

/// Part of the file name: bump it whenever the schema or the generated data changes, so that a
/// file made by an older demo is not reused.
const SCHEMA_VERSION: u32 = 2;

/// Products per category. A page ranks its product among the category's products, which reads
/// about `PRODUCTS_PER_CATEGORY * AVG_REVIEWS` reviews: this is the knob for the query's cost.
pub const PRODUCTS_PER_CATEGORY: u64 = 400;

/// Reviews per product: uniform in `0..=2 * AVG_REVIEWS`.
const AVG_REVIEWS: u64 = 5;

/// How many of the latest reviews a product page shows.
pub const LATEST_REVIEWS: usize = 5;

/// The generated data is the same on every run.
const SEED: u64 = 0x00CA_C4E7;

const SCHEMA: &str = "
    CREATE TABLE categories (
        id   INTEGER PRIMARY KEY,
        name TEXT NOT NULL
    );
    CREATE TABLE products (
        id          INTEGER PRIMARY KEY,
        category_id INTEGER NOT NULL REFERENCES categories(id),
        name        TEXT NOT NULL,
        price_cents INTEGER NOT NULL
    );
    CREATE TABLE reviews (
        id         INTEGER PRIMARY KEY,
        product_id INTEGER NOT NULL REFERENCES products(id),
        rating     INTEGER NOT NULL CHECK (rating BETWEEN 1 AND 5),
        author     TEXT NOT NULL,
        body       TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );";

/// Indexes are created after the bulk insert, which is faster than maintaining them row by row.
const INDEXES: &str = "
    CREATE INDEX products_by_category ON products(category_id);
    CREATE INDEX reviews_by_product ON reviews(product_id, created_at);";

/// The product, its category, its own rating, and its rank among the rated products of its
/// category (1 + the number with a strictly higher average: ties share a rank).
const PAGE_SQL: &str = "
    WITH stats AS MATERIALIZED (
        SELECT r.product_id AS product_id, COUNT(*) AS n, SUM(r.rating) AS total,
               AVG(r.rating) AS avg
        FROM products p JOIN reviews r ON r.product_id = p.id
        WHERE p.category_id = (SELECT category_id FROM products WHERE id = ?1)
        GROUP BY r.product_id
    )
    SELECT p.name, p.price_cents, c.name,
           COALESCE(s.n, 0), s.avg,
           (SELECT COUNT(*) FROM stats),
           (SELECT CAST(SUM(total) AS REAL) / SUM(n) FROM stats),
           CASE WHEN s.avg IS NULL THEN NULL
                ELSE 1 + (SELECT COUNT(*) FROM stats o WHERE o.avg > s.avg) END
    FROM products p
    JOIN categories c ON c.id = p.category_id
    LEFT JOIN stats s ON s.product_id = p.id
    WHERE p.id = ?1";

const LATEST_SQL: &str = "
    SELECT rating, author, body, created_at FROM reviews
    WHERE product_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2";

/// Everything a product page shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductPage {
    pub id: u64,
    pub name: String,
    pub price_cents: i64,
    /// How many times the price changed since the catalog was created (see `prices.rs`).
    pub price_version: u64,
    pub category: String,
    /// Reviews of this product, and their mean rating (`None` without reviews).
    pub reviews: u64,
    pub rating: Option<f64>,
    /// Products of the category with at least one review, and the mean of all their ratings.
    pub category_rated: u64,
    pub category_rating: Option<f64>,
    /// This product's rank by mean rating within its category (`None` without reviews).
    pub rank: Option<u64>,
    /// The latest reviews, newest first.
    pub latest: Vec<Review>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Review {
    pub rating: u8,
    pub author: String,
    pub body: String,
    pub created_at: i64,
}

/// Runs the product-page query on `conn`; `Ok(None)` if there is no such product. Both
/// statements are prepared once per connection (rusqlite's statement cache); the catalog is
/// never written once created, so they need no transaction to agree.
pub fn product_page(conn: &Connection, id: u64) -> rusqlite::Result<Option<ProductPage>> {
    let page = conn
        .prepare_cached(PAGE_SQL)?
        .query_row(params![id], |row| {
            Ok(ProductPage {
                id,
                name: row.get(0)?,
                price_cents: row.get(1)?,
                price_version: 0,
                category: row.get(2)?,
                reviews: row.get(3)?,
                rating: row.get(4)?,
                category_rated: row.get(5)?,
                category_rating: row.get(6)?,
                rank: row.get(7)?,
                latest: Vec::new(),
            })
        })
        .optional()?;
    let Some(mut page) = page else {
        return Ok(None);
    };
    let mut latest = conn.prepare_cached(LATEST_SQL)?;
    let rows = latest.query_map(params![id, LATEST_REVIEWS], |row| {
        Ok(Review {
            rating: row.get(0)?,
            author: row.get(1)?,
            body: row.get(2)?,
            created_at: row.get(3)?,
        })
    })?;
    page.latest = rows.collect::<rusqlite::Result<_>>()?;
    Ok(Some(page))
}

impl ProductPage {
    /// The page as the service sends it: a JSON document.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256 + 128 * self.latest.len());
        let _ = write!(out, r#"{{"id":{},"name":"#, self.id);
        push_json_str(&mut out, &self.name);
        let _ = write!(
            out,
            r#","price_cents":{},"price_version":{},"category":"#,
            self.price_cents, self.price_version
        );
        push_json_str(&mut out, &self.category);
        let _ = write!(
            out,
            r#","reviews":{},"rating":{},"category_rated":{},"category_rating":{},"rank":{},"latest":["#,
            self.reviews,
            JsonOpt(self.rating.map(|r| format!("{r:.3}"))),
            self.category_rated,
            JsonOpt(self.category_rating.map(|r| format!("{r:.3}"))),
            JsonOpt(self.rank),
        );
        for (i, review) in self.latest.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, r#"{{"rating":{},"author":"#, review.rating);
            push_json_str(&mut out, &review.author);
            out.push_str(r#","body":"#);
            push_json_str(&mut out, &review.body);
            let _ = write!(out, r#","created_at":{}}}"#, review.created_at);
        }
        out.push_str("]}");
        out
    }
}

/// A JSON value that may be `null`.
struct JsonOpt<T>(Option<T>);

impl<T: fmt::Display> fmt::Display for JsonOpt<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(v) => v.fmt(f),
            None => f.write_str("null"),
        }
    }
}

/// Appends `s` as a quoted JSON string.
fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Where the catalog of `products` products lives: the OS temporary directory, one file per
/// size and schema version.
pub fn default_path(products: u64) -> PathBuf {
    std::env::temp_dir().join(format!("cachet-demo-v{SCHEMA_VERSION}-{products}.sqlite"))
}

/// Makes sure a catalog of `products` products exists at `path`. Returns `true` if it had to be
/// created. It is built in a temporary file and renamed into place, so an interrupted run never
/// leaves a half-filled catalog behind to be reused.
pub fn create_if_missing(path: &Path, products: u64) -> Result<bool, Box<dyn std::error::Error>> {
    if path.exists() {
        return Ok(false);
    }
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_file(&partial);
    let mut conn = Connection::open(&partial)?;
    // Nothing to protect while building: no journal, no fsync.
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
    create(&mut conn, products)?;
    drop(conn);
    std::fs::rename(&partial, path)?;
    Ok(true)
}

/// Creates the schema and fills it with `products` generated products (and their categories and
/// reviews) in one transaction, with prepared statements; then indexes and analyses it.
pub fn create(conn: &mut Connection, products: u64) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    fill(&tx, products)?;
    tx.execute_batch(INDEXES)?;
    // Statistics for the query planner, so it picks the indexes on every run.
    tx.execute_batch("ANALYZE")?;
    tx.commit()
}

/// Words the generated names and reviews are made of.
const ADJECTIVES: [&str; 12] = [
    "Compact",
    "Deluxe",
    "Ergonomic",
    "Rustic",
    "Sleek",
    "Sturdy",
    "Vintage",
    "Wireless",
    "Modular",
    "Silent",
    "Portable",
    "Smart",
];
const NOUNS: [&str; 12] = [
    "Kettle", "Lamp", "Backpack", "Keyboard", "Chair", "Blender", "Tent", "Speaker", "Watch",
    "Notebook", "Drill", "Mug",
];
const VERDICTS: [&str; 6] = [
    "Does exactly what it says.",
    "Broke after a week, disappointing.",
    "Great value for the price.",
    "Arrived late but works fine.",
    "Better than the one I had before.",
    "Would not buy again.",
];

fn fill(tx: &Transaction<'_>, products: u64) -> rusqlite::Result<()> {
    let mut rng = SmallRng::seed_from_u64(SEED);
    let categories = products.div_ceil(PRODUCTS_PER_CATEGORY).max(1);
    let mut insert = tx.prepare("INSERT INTO categories (id, name) VALUES (?1, ?2)")?;
    for id in 1..=categories {
        insert.execute(params![
            id,
            format!("{} #{id}", NOUNS[id as usize % NOUNS.len()])
        ])?;
    }
    let mut product = tx.prepare(
        "INSERT INTO products (id, category_id, name, price_cents) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut review = tx.prepare(
        "INSERT INTO reviews (product_id, rating, author, body, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for id in 1..=products {
        // Neighbouring ids (the most popular products, see the load generator) land in
        // different categories.
        let category = (id - 1) % categories + 1;
        let name = format!(
            "{} {} {id}",
            ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
            NOUNS[rng.random_range(0..NOUNS.len())]
        );
        product.execute(params![id, category, name, rng.random_range(199..99_999)])?;
        // Each product has a quality; its reviews scatter around it.
        let quality: i64 = rng.random_range(1..=5);
        for _ in 0..rng.random_range(0..=2 * AVG_REVIEWS) {
            let rating = (quality + rng.random_range(-1..=1)).clamp(1, 5);
            let author = format!("user{}", rng.random_range(1..1_000_000));
            let body = VERDICTS[rng.random_range(0..VERDICTS.len())];
            let created_at = 1_700_000_000 + rng.random_range(0..31_536_000_i64);
            review.execute(params![id, rating, author, body, created_at])?;
        }
    }
    Ok(())
}

/// What a product-page query costs.
pub struct QueryCost {
    pub mean: Duration,
    pub queries: u32,
}

/// Times product-page queries on one fresh connection to the catalog at `path`, over products
/// spread across the catalog (after a few untimed ones that prepare the statements). This also
/// brings the file into the OS page cache before the scenarios start.
pub fn query_cost(path: &Path, products: u64) -> rusqlite::Result<QueryCost> {
    const QUERIES: u32 = 300;
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let id = |i: u32| 1 + u64::from(i) * 7_919 % products;
    for i in 0..10 {
        product_page(&conn, id(i))?;
    }
    let start = Instant::now();
    for i in 0..QUERIES {
        product_page(&conn, id(i))?;
    }
    Ok(QueryCost {
        mean: start.elapsed() / QUERIES,
        queries: QUERIES,
    })
}

/// Why a page could not be read.
#[derive(Debug)]
pub enum DbError {
    Sqlite(rusqlite::Error),
    /// The blocking task running the query panicked or was cancelled.
    Task(String),
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Sqlite(e) => write!(f, "sqlite: {e}"),
            DbError::Task(e) => write!(f, "query task: {e}"),
        }
    }
}

impl std::error::Error for DbError {}

/// A pool of read-only connections to the catalog, and a count of the queries run on it.
///
/// A semaphore with one permit per connection is acquired (asynchronously) before a query is
/// handed to tokio's blocking thread pool, so at most `connections` blocking threads ever wait on
/// SQLite and a permit holder always finds an idle connection. Cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Pool>,
}

struct Pool {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
    queries: AtomicU64,
}

impl Db {
    /// Opens `connections` read-only connections to the catalog at `path`.
    pub fn open(path: &Path, connections: usize) -> rusqlite::Result<Db> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let idle = (0..connections.max(1))
            .map(|_| {
                let conn = Connection::open_with_flags(path, flags)?;
                // Map the file instead of copying pages through read(2).
                conn.execute_batch("PRAGMA mmap_size = 1073741824;")?;
                Ok(conn)
            })
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Db::from_connections(idle))
    }

    /// A pool over connections that are already open (tests use an in-memory database).
    pub fn from_connections(idle: Vec<Connection>) -> Db {
        Db {
            inner: Arc::new(Pool {
                permits: Arc::new(Semaphore::new(idle.len())),
                idle: Mutex::new(idle),
                queries: AtomicU64::new(0),
            }),
        }
    }

    /// Product-page queries run so far.
    pub fn queries(&self) -> u64 {
        self.inner.queries.load(Ordering::Relaxed)
    }

    /// Runs the product-page query for `id` on a pooled connection, on tokio's blocking thread
    /// pool. Counts one query.
    pub async fn product_page(&self, id: u64) -> Result<Option<ProductPage>, DbError> {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|e| DbError::Task(e.to_string()))?;
        let pool = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            // The permit moves into the task: it is released only once the connection is back.
            let _permit = permit;
            let conn = Checkout::take(&pool);
            pool.queries.fetch_add(1, Ordering::Relaxed);
            product_page(conn.conn(), id).map_err(DbError::Sqlite)
        })
        .await
        .map_err(|e| DbError::Task(e.to_string()))?
    }
}

/// A connection taken from the pool; it goes back when dropped, even if the query panicked.
struct Checkout<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl<'a> Checkout<'a> {
    fn take(pool: &'a Pool) -> Self {
        let conn = pool.idle.lock().pop();
        assert!(conn.is_some(), "a permit guarantees an idle connection");
        Checkout { pool, conn }
    }

    fn conn(&self) -> &Connection {
        self.conn.as_ref().expect("present until dropped")
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.pool.idle.lock().push(conn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A catalog small enough to check by hand: two categories, four products.
    ///
    /// | product | category | ratings          | mean |
    /// |---------|----------|------------------|------|
    /// | 1       | Lamps    | 5, 4, 3          | 4.0  |
    /// | 2       | Lamps    | 5, 5             | 5.0  |
    /// | 3       | Lamps    | (none)           | -    |
    /// | 4       | Mugs     | 1                | 1.0  |
    fn tiny() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            r#"
            INSERT INTO categories VALUES (1, 'Lamps'), (2, 'Mugs');
            INSERT INTO products VALUES
                (1, 1, 'Desk "Lamp"', 2500), (2, 1, 'Floor Lamp', 9900),
                (3, 1, 'Night Lamp', 1500), (4, 2, 'Mug', 800);
            INSERT INTO reviews (product_id, rating, author, body, created_at) VALUES
                (1, 5, 'ann', 'bright', 100), (1, 4, 'bob', 'ok', 300), (1, 3, 'cy', 'meh', 200),
                (2, 5, 'di', 'great', 50), (2, 5, 'ed', 'superb', 60),
                (4, 1, 'fay', 'leaks', 10);
            "#,
        )
        .unwrap();
        conn.execute_batch(INDEXES).unwrap();
        conn
    }

    #[test]
    fn page_aggregates_its_product_and_category() {
        let conn = tiny();
        let page = product_page(&conn, 1).unwrap().unwrap();
        assert_eq!(page.name, "Desk \"Lamp\"");
        assert_eq!(page.price_cents, 2500);
        assert_eq!(page.category, "Lamps");
        assert_eq!(page.reviews, 3);
        assert_eq!(page.rating, Some(4.0));
        // Lamps: products 1 and 2 are rated, 5 ratings summing to 22.
        assert_eq!(page.category_rated, 2);
        assert_eq!(page.category_rating, Some(22.0 / 5.0));
        assert_eq!(page.rank, Some(2));
        let dates: Vec<i64> = page.latest.iter().map(|r| r.created_at).collect();
        assert_eq!(dates, [300, 200, 100], "newest first");
        assert_eq!(page.latest[0].author, "bob");

        assert_eq!(product_page(&conn, 2).unwrap().unwrap().rank, Some(1));
    }

    #[test]
    fn page_without_reviews_and_missing_product() {
        let conn = tiny();
        let unrated = product_page(&conn, 3).unwrap().unwrap();
        assert_eq!(
            (unrated.reviews, unrated.rating, unrated.rank),
            (0, None, None)
        );
        assert_eq!(unrated.category_rated, 2);
        assert!(unrated.latest.is_empty());

        let alone = product_page(&conn, 4).unwrap().unwrap();
        assert_eq!((alone.rank, alone.category_rated), (Some(1), 1));

        assert_eq!(product_page(&conn, 99).unwrap(), None);
    }

    #[test]
    fn latest_reviews_are_capped() {
        let conn = tiny();
        for t in 0..10 {
            conn.execute(
                "INSERT INTO reviews (product_id, rating, author, body, created_at)
                 VALUES (4, 2, 'gus', 'again', ?1)",
                params![1_000 + t],
            )
            .unwrap();
        }
        let page = product_page(&conn, 4).unwrap().unwrap();
        assert_eq!(page.reviews, 11);
        assert_eq!(page.latest.len(), LATEST_REVIEWS);
        assert_eq!(page.latest[0].created_at, 1_009);
    }

    #[test]
    fn json_is_escaped_and_complete() {
        let conn = tiny();
        let json = product_page(&conn, 1).unwrap().unwrap().to_json();
        assert!(json.starts_with(r#"{"id":1,"name":"Desk \"Lamp\"","price_cents":2500,"#));
        assert!(
            json.contains(r#""rating":4.000,"category_rated":2,"category_rating":4.400,"rank":2"#)
        );
        assert!(json.ends_with(r#""body":"bright","created_at":100}]}"#));

        let unrated = product_page(&conn, 3).unwrap().unwrap().to_json();
        assert!(unrated.contains(r#""rating":null"#) && unrated.ends_with(r#""latest":[]}"#));

        let mut s = String::new();
        push_json_str(&mut s, "a\\b\n\u{1}é");
        assert_eq!(s, r#""a\\b\n\u0001é""#);
    }

    #[test]
    fn generated_catalog_has_every_product_in_a_category() {
        // Two full categories and a partial third.
        let products = 2 * PRODUCTS_PER_CATEGORY + 50;
        let mut conn = Connection::open_in_memory().unwrap();
        create(&mut conn, products).unwrap();
        let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, u64>(0)).unwrap();
        assert_eq!(count("SELECT COUNT(*) FROM products"), products);
        assert_eq!(count("SELECT COUNT(*) FROM categories"), 3);
        let orphans = "SELECT COUNT(*) FROM products p
                       LEFT JOIN categories c ON c.id = p.category_id WHERE c.id IS NULL";
        assert_eq!(count(orphans), 0);
        let reviews = count("SELECT COUNT(*) FROM reviews");
        assert!(
            (products * 4..=products * 6).contains(&reviews),
            "{reviews} reviews"
        );
        // Product 3 is in category 3; the page's category figures agree with a direct count.
        let page = product_page(&conn, 3).unwrap().unwrap();
        let rated = "SELECT COUNT(DISTINCT r.product_id) FROM reviews r
                     JOIN products p ON p.id = r.product_id WHERE p.category_id = 3";
        assert_eq!(page.category_rated, count(rated));
        assert_eq!(page.category, format!("{} #3", NOUNS[3]));
    }

    #[tokio::test]
    async fn pool_counts_queries() {
        let db = Db::from_connections(vec![tiny(), tiny()]);
        let pages = page_ids(&db, [1, 2, 99]).await;
        assert_eq!(pages, [Some(1), Some(2), None]);
        assert_eq!(db.queries(), 3);
    }

    async fn page_ids<const N: usize>(db: &Db, ids: [u64; N]) -> Vec<Option<u64>> {
        let tasks: Vec<_> = ids
            .into_iter()
            .map(|id| {
                let db = db.clone();
                tokio::spawn(async move { db.product_page(id).await.unwrap().map(|p| p.id) })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }
}
