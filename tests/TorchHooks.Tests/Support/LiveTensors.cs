using System;
using TorchSharp;

namespace TorchHooks.Tests
{
    /// <summary>The live-tensor count once earlier tests' garbage is gone.</summary>
    public static class LiveTensors
    {
        /// <summary>
        /// Collects and runs finalizers until <see cref="torch.Tensor.TotalCount"/> stops changing (at most 10 rounds): a
        /// finalizer that drops the last reference to tensors (a module, an autograd node's context) makes them
        /// finalizable only in the next round, so one collect–wait–collect can leave some to be freed in the middle
        /// of the measurement.
        /// </summary>
        public static long Settle()
        {
            long count = torch.Tensor.TotalCount;
            for (int i = 0; i < 10; i++)
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
                long now = torch.Tensor.TotalCount;
                if (now == count && i > 0) break;
                count = now;
            }
            return count;
        }
    }
}
