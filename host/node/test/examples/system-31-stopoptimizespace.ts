// 001_b6537456dcabf801.reflowed.md, "cloudSync.stopOptimizeSpace": the seed's example as written.
import { cloudSync } from '@kit.CoreFileKit'; // the seed's "Modules to Import"
import { BusinessError } from '@kit.BasicServicesKit';
let para:cloudSync.OptimizeSpaceParam = {totalSize: 1073741824, agingDays: 30};
let callback = (data:cloudSync.OptimizeSpaceProgress) => {
if (data.state == cloudSync.OptimizeState.FAILED) {
console.info("optimize space failed");
} else if (data.state == cloudSync.OptimizeState.RUNNING) {
console.info("optimize space progress:" + data.progress);
}
}
cloudSync.startOptimizeSpace(para, callback);
cloudSync.stopOptimizeSpace(); // Stop space optimization.
