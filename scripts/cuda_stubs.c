/* Stand-ins for the two CUDA libraries that PyPI's libtorch_cpu.so names as dependencies
 * (its profiler, kineto, links CUPTI and a few CUDA runtime calls). A CPU build of rlhf
 * never reaches them; these stubs let libtorch_cpu load on a machine without CUDA and answer
 * "no device" should anything ask. Built by scripts/setup into .deps/libtorch/lib, where
 * libtorch_cpu's $ORIGIN rpath finds them before any system copy.
 * Build: cc -shared -fPIC -DSTUB_CUDART ... (one library per define). */
#if defined(STUB_CUDART)
enum { kNoDevice = 100 };
int cudaGetDeviceCount(int* n) { if (n) *n = 0; return kNoDevice; }
int cudaDeviceSynchronize(void) { return kNoDevice; }
int cudaDriverGetVersion(int* v) { if (v) *v = 0; return 0; }
int cudaRuntimeGetVersion(int* v) { if (v) *v = 0; return 0; }
int cudaGetDeviceProperties(void* p, int d) { (void)p; (void)d; return kNoDevice; }
const char* cudaGetErrorString(int e) { (void)e; return "no CUDA device (CPU build of rlhf)"; }
#elif defined(STUB_CUPTI)
enum { kNotInitialized = 15 };
#define STUB(name) int name(void) { return kNotInitialized; }
STUB(cuptiActivityDisable) STUB(cuptiActivityEnable) STUB(cuptiActivityEnableCudaEventDeviceTimestamps)
STUB(cuptiActivityEnableDriverApi) STUB(cuptiActivityEnableRuntimeApi) STUB(cuptiActivityFlushAll)
STUB(cuptiActivityGetNextRecord) STUB(cuptiActivityGetNumDroppedRecords)
STUB(cuptiActivityPopExternalCorrelationId) STUB(cuptiActivityPushExternalCorrelationId)
STUB(cuptiActivityRegisterCallbacks) STUB(cuptiActivityRegisterTimestampCallback)
STUB(cuptiActivitySetAttribute) STUB(cuptiEnableCallback) STUB(cuptiEnableDomain) STUB(cuptiFinalize)
STUB(cuptiGetVersion) STUB(cuptiSubscribe) STUB(cuptiUnsubscribe)
int cuptiGetResultString(int r, const char** s) { (void)r; if (s) *s = "CUPTI unavailable (CPU build of rlhf)"; return 0; }
#endif
