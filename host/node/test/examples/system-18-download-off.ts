// 001_b6537456dcabf801.reflowed.md, "Download off": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
let download = new cloudSync.Download();

let callback = (pg: cloudSync.DownloadProgress) => {
console.info("download state: " + pg.state);
}

download.on('progress', callback);

download.off('progress', callback);
