using System;

namespace TorchHooks.Tests.Reliability
{
    /// <summary>
    /// The reliability suites' size: normal runs are bounded (under 2 minutes together); with the environment
    /// variable TORCHHOOKS_SOAK=1 every loop runs 10× longer (docs/reliability.md has the figures of both).
    /// </summary>
    internal static class Soak
    {
        public static bool On => Environment.GetEnvironmentVariable("TORCHHOOKS_SOAK") == "1";

        public static int Factor => On ? 10 : 1;

        public static int Scale(int n) => n * Factor;
    }
}
