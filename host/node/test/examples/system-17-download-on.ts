// 001_b6537456dcabf801.reflowed.md, "Download on": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
let download = new cloudSync.Download();

download.on('progress', (pg: cloudSync.DownloadProgress) => {
console.info("download state: " + pg.state);
});
