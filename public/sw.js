// Finetune Studio's service worker: after the first visit the app opens without a network.
// Network first (a new build is picked up at once), the cached copy when offline. The weights
// are not stored here: the app keeps them in its own Cache API bucket.
// One cache per build: `scripts/sw-version.sh` (a Trunk post-build hook) writes the build's
// hash here, so a new build's service worker is a new file, and its activation deletes the
// files of every older build once its own are all stored.
const BUILD = 'dev';
const CACHE = `finetune-app-${BUILD}`;

// The page's own files, read from index.html (Trunk names them with content hashes). All or
// nothing: a file that does not arrive fails the install, so this build's worker is dropped
// and the previous build (its worker and its cache) keeps the app working offline.
async function precache() {
  const fetchOk = async (file) => {
    const response = await fetch(file, { cache: 'no-cache' });
    if (!response.ok) throw new Error(`${file}: ${response.status}`);
    return response;
  };
  const index = await fetchOk('./');
  const html = await index.clone().text();
  const files = new Set(html.match(/\.\/[\w.-]+\.(?:js|wasm|css)/g) ?? []);
  // The JS glue imports wasm-bindgen's snippets (e.g. the IndexedDB helpers): cache those too.
  for (const file of [...files].filter((f) => f.endsWith('.js'))) {
    const js = await (await fetchOk(file)).text();
    for (const snippet of js.match(/\.\/snippets\/[\w./-]+\.js/g) ?? []) files.add(snippet);
  }
  const cache = await caches.open(CACHE);
  await cache.addAll([...files]);
  // The page last: a cache that holds it is complete.
  await cache.put('./', index);
}

self.addEventListener('install', (event) => {
  event.waitUntil(
    precache()
      .catch(async (err) => {
        await caches.delete(CACHE);
        throw err;
      })
      .then(() => self.skipWaiting()),
  );
});

// Older builds' caches go only once this build's is complete (an install that failed never
// gets here, but a cache can also be cleared by the browser in between).
self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      const complete = await (await caches.open(CACHE)).match('./');
      if (complete) {
        const keys = await caches.keys();
        await Promise.all(keys.filter((k) => k.startsWith('finetune-app-') && k !== CACHE).map((k) => caches.delete(k)));
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== 'GET' || url.origin !== self.location.origin || url.pathname.endsWith('.safetensors')) return;
  event.respondWith(
    fetch(request)
      .then((response) => {
        if (response.ok) {
          const copy = response.clone();
          caches.open(CACHE).then((cache) => cache.put(request, copy));
        }
        return response;
      })
      .catch(async () => (await caches.match(request, { ignoreSearch: true })) ?? Response.error()),
  );
});
