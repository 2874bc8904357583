namespace TorchHooks
{
    /// <summary>
    /// What a hook returns: <c>null</c> keeps the value (PyTorch's <c>None</c>), anything else replaces it.
    /// A hook body simply returns the new value (<c>(m, x) =&gt; x * 2</c>) or <c>null</c>; the implicit
    /// conversion does the wrapping.
    /// </summary>
    /// <remarks>
    /// TorchSharp's own hooks use a bare <c>T</c> where <c>null</c> means "keep", which a value type such
    /// as a tuple cannot express. Wrapping the replacement keeps the two cases apart for every type:
    /// a tuple-returning module's hook returns <c>null</c> to keep the output and a tuple to replace it.
    /// </remarks>
    /// <typeparam name="T">The type of the value being replaced.</typeparam>
    public sealed class HookResult<T>
    {
        /// <summary>Wraps a replacement value.</summary>
        public HookResult(T value) { Value = value; }

        /// <summary>The replacement value.</summary>
        public T Value { get; }

        /// <summary>Wraps <paramref name="value"/> as a replacement. A null reference means "keep".</summary>
        public static implicit operator HookResult<T>?(T? value) => value is null ? null : new HookResult<T>(value);
    }
}
