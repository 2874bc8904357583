using System;
using System.Collections.Generic;
using static TorchSharp.torch;

namespace TorchHooks.NUnit
{
    /// <summary>
    /// How far a fingerprint number may move, per output dtype: a value passes when
    /// <c>|actual − expected| ≤ tolerance × max(1, |expected|)</c> (absolute near zero, relative for large values).
    /// </summary>
    internal sealed class Tolerances
    {
        /// <summary>float64 1e-10, float32 1e-5, float16 1e-3, bfloat16 1e-2 (8 significant bits); integers and bool exact.</summary>
        public static IReadOnlyDictionary<string, double> Defaults { get; } = new Dictionary<string, double>
        {
            ["float64"] = 1e-10,
            ["float32"] = 1e-5,
            ["float16"] = 1e-3,
            ["bfloat16"] = 1e-2,
        };

        private readonly Dictionary<string, double> _byDtype = new(Defaults);

        /// <summary>Sets the tolerance of every floating dtype.</summary>
        public void SetAll(double tolerance)
        {
            foreach (var key in new List<string>(_byDtype.Keys)) _byDtype[key] = tolerance;
        }

        public void Set(ScalarType dtype, double tolerance) => _byDtype[Fingerprint.DtypeName(dtype)] = tolerance;

        /// <summary>The tolerance for outputs of <paramref name="dtype"/> (a <see cref="Fingerprint.DtypeName"/>); 0 for integer types.</summary>
        public double For(string dtype) => _byDtype.TryGetValue(dtype, out var t) ? t : 0.0;

        public static bool Close(double expected, double actual, double tolerance)
        {
            if (double.IsNaN(expected) || double.IsNaN(actual)) return double.IsNaN(expected) && double.IsNaN(actual);
            if (double.IsInfinity(expected) || double.IsInfinity(actual)) return expected == actual;
            return Math.Abs(actual - expected) <= tolerance * Math.Max(1.0, Math.Abs(expected));
        }

        public static void Check(double tolerance, string argument)
        {
            if (double.IsNaN(tolerance) || tolerance < 0)
                throw new ArgumentOutOfRangeException(argument, tolerance, "A tolerance is a non-negative number, e.g. Within(1e-5) (relative above 1, absolute below).");
        }
    }
}
