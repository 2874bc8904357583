using System;
using System.Collections.Generic;

namespace TorchHooks.NUnit
{
    /// <summary>
    /// Records the module calls of one pass: <see cref="Record"/> runs <c>pass</c> and returns every module call it
    /// made on the calling thread, in call order (pre-order), with inputs, outputs and fingerprints filled in.
    /// </summary>
    /// <remarks>
    /// The seam between the snapshot and how calls are observed. <see cref="HookCallRecorder"/> uses TorchHooks'
    /// public global forward hooks; a recorder on the call path's tracing concern can replace it without touching
    /// the snapshot, its comparison or the constraint.
    /// </remarks>
    internal interface ICallRecorder
    {
        IReadOnlyList<CallRecord> Record(Action pass);
    }
}
