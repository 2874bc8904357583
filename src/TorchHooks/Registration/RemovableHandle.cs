using System;
using System.Threading;

namespace TorchHooks
{
    /// <summary>
    /// The handle returned by every hook registration, like PyTorch's <c>RemovableHandle</c>.
    /// <see cref="remove"/> and <see cref="Dispose"/> are the same operation: idempotent, never throw,
    /// so a handle works as a <c>using</c> scope.
    /// </summary>
    public sealed class RemovableHandle : IDisposable
    {
        private static long s_nextId;
        private Action<RemovableHandle>? _remove;

        internal RemovableHandle(Action<RemovableHandle> remove)
        {
            id = Interlocked.Increment(ref s_nextId);
            _remove = remove;
            HookScope.Record(this);
        }

        /// <summary>Process-wide unique id; ids are never reused.</summary>
        public long id { get; }

        /// <summary>True until the hook is removed.</summary>
        public bool IsRegistered => Volatile.Read(ref _remove) is not null;

        /// <summary>Removes the hook. A call already under way still runs it; later calls don't.</summary>
        public void remove() => Interlocked.Exchange(ref _remove, null)?.Invoke(this);

        /// <summary>Same as <see cref="remove"/>.</summary>
        public void Dispose() => remove();

        /// <inheritdoc />
        public override string ToString() => $"RemovableHandle(id={id}{(IsRegistered ? "" : ", removed")})";
    }
}
