// Finetune Studio's service worker: after the first visit the app opens without a network.
// Network first (a new build is picked up at once), the cached copy when offline. The weights
// are not stored here: the app keeps them in its own Cache API bucket.
// One cache per build: `scripts/sw-version.sh` (a Trunk post-build hook) writes the build's
// hash here, so a new build's service worker is a new file, and its activation deletes the
// files of every older build.
const BUILD = 'dev';
const CACHE = `finetune-app-${BUILD}`;

// The page's own files, read from index.html (Trunk names them with content hashes).
async function precache() {
  const cache = await caches.open(CACHE);
  const response = await fetch('./', { cache: 'no-cache' });
  if (!response.ok) return;
  const html = await response.clone().text();
  const files = new Set(html.match(/\.\/[\w.-]+\.(?:js|wasm|css)/g) ?? []);
  await cache.put('./', response);
  // The JS glue imports wasm-bindgen's snippets (e.g. the IndexedDB helpers): cache those too.
  for (const file of [...files].filter((f) => f.endsWith('.js'))) {
    const js = await fetch(file).then((r) => (r.ok ? r.text() : '')).catch(() => '');
    for (const snippet of js.match(/\.\/snippets\/[\w./-]+\.js/g) ?? []) files.add(snippet);
  }
  await Promise.all([...files].map((f) => cache.add(f).catch(() => {})));
}

self.addEventListener('install', (event) => {
  event.waitUntil(precache().then(() => self.skipWaiting()));
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) => Promise.all(keys.filter((k) => k.startsWith('finetune-app-') && k !== CACHE).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
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
