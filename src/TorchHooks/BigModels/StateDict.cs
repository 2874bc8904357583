using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using TorchSharp;
using Tensor = TorchSharp.torch.Tensor;

namespace TorchHooks
{
    /// <summary>
    /// An ordered state dict whose values are tensors or, until read, tensors stored in a <see cref="Checkpoint"/>
    /// — what PyTorch's state-dict hooks receive here (<see cref="HookPoint.register_load_state_dict_pre_hook"/>),
    /// so a hook can rename keys without reading any data (<see cref="Rename"/>), or read one tensor and replace
    /// it with a converted one (the indexer).
    /// </summary>
    /// <remarks>
    /// Ownership: tensors the dict read from its checkpoint (the indexer's getter) and the detached aliases made by
    /// <see cref="StateDictLoading.StateDict"/> belong to the dict and are disposed with it; tensors you set are
    /// yours (dispose them after the dict).
    /// </remarks>
    public sealed class StateDict : IEnumerable<string>, IDisposable
    {
        private sealed class Entry
        {
            public StoredTensor? Stored;
            public Checkpoint? Source;
            public Tensor? Value;
            public bool Owned;
        }

        private readonly List<string> _order = new();
        private readonly Dictionary<string, Entry> _entries = new(StringComparer.Ordinal);
        private readonly List<Tensor> _owned = new();

        /// <summary>An empty state dict.</summary>
        public StateDict() { }

        /// <summary>A state dict of every tensor of <paramref name="checkpoint"/>, unread.</summary>
        public StateDict(Checkpoint checkpoint)
        {
            if (checkpoint is null) throw new ArgumentNullException(nameof(checkpoint), "Pass a checkpoint from Checkpoint.Open(path).");
            foreach (var t in checkpoint.Tensors) Add(t.Name, new Entry { Stored = t, Source = checkpoint });
        }

        /// <summary>The keys, in order.</summary>
        public IReadOnlyList<string> Keys => _order;

        /// <summary>The number of entries.</summary>
        public int Count => _order.Count;

        /// <summary>Whether <paramref name="key"/> is in the dict.</summary>
        public bool ContainsKey(string key) => _entries.ContainsKey(key);

        /// <summary>
        /// The tensor at <paramref name="key"/>: a stored tensor is read (memory-mapped copy) on first access and
        /// kept by the dict. Setting replaces the entry (the tensor stays yours), or adds it at the end.
        /// </summary>
        public Tensor this[string key]
        {
            get
            {
                var e = Get(key);
                if (e.Value is null)
                {
                    e.Value = e.Source!.Read(e.Stored!.Name);
                    e.Owned = true;
                    _owned.Add(e.Value);
                }
                return e.Value;
            }
            set
            {
                if (value is null) throw new ArgumentNullException(nameof(value), $"Pass a tensor for '{key}', or Remove(\"{key}\") to drop the entry.");
                if (_entries.TryGetValue(key, out var e)) { e.Value = value; e.Stored = null; e.Source = null; e.Owned = false; }
                else Add(key, new Entry { Value = value });
            }
        }

        /// <summary>The shape at <paramref name="key"/>, without reading a stored tensor.</summary>
        public IReadOnlyList<long> Shape(string key) { var e = Get(key); return e.Value is not null ? e.Value.shape : e.Stored!.shape; }

        /// <summary>The dtype at <paramref name="key"/>, without reading a stored tensor.</summary>
        public torch.ScalarType DType(string key) { var e = Get(key); return e.Value?.dtype ?? e.Stored!.dtype; }

        /// <summary>The stored tensor behind <paramref name="key"/>, or null once it was read or replaced.</summary>
        public StoredTensor? Stored(string key) { var e = Get(key); return e.Value is null ? e.Stored : null; }

        /// <summary>Removes <paramref name="key"/> (PyTorch's <c>state_dict.pop(key)</c> without the value); false if absent.</summary>
        public bool Remove(string key)
        {
            if (!_entries.Remove(key)) return false;
            _order.Remove(key);
            return true;
        }

        /// <summary>Moves the entry at <paramref name="key"/> to <paramref name="newKey"/> (at the end, as <c>sd[new] = sd.pop(old)</c>), without reading it.</summary>
        public void Rename(string key, string newKey)
        {
            if (newKey is null) throw new ArgumentNullException(nameof(newKey));
            var e = Get(key);
            if (key == newKey) return;
            if (_entries.ContainsKey(newKey)) throw new ArgumentException($"Cannot rename '{key}' to '{newKey}': that key exists; Remove it first.", nameof(newKey));
            Remove(key);
            Add(newKey, e);
        }

        /// <summary>A shallow copy: the same stored tensors and tensor objects (tensors stay owned by this dict).</summary>
        public StateDict Copy()
        {
            var copy = new StateDict();
            foreach (var k in _order)
            {
                var e = _entries[k];
                copy.Add(k, new Entry { Stored = e.Stored, Source = e.Source, Value = e.Value });
            }
            return copy;
        }

        internal void SetOwned(string key, Tensor value)
        {
            this[key] = value;
            _entries[key].Owned = true;
            _owned.Add(value);
        }

        internal (StoredTensor? Stored, Checkpoint? Source, Tensor? Value) Source(string key)
        {
            var e = Get(key);
            return (e.Value is null ? e.Stored : null, e.Value is null ? e.Source : null, e.Value);
        }

        private Entry Get(string key)
            => _entries.TryGetValue(key, out var e) ? e
             : throw new KeyNotFoundException($"The state dict has no key '{key}'. It has {_order.Count}, e.g. {string.Join(", ", _order.Take(5).Select(k => "'" + k + "'"))}.");

        private void Add(string key, Entry e)
        {
            if (key is null) throw new ArgumentNullException(nameof(key));
            _entries.Add(key, e);
            _order.Add(key);
        }

        /// <inheritdoc />
        public IEnumerator<string> GetEnumerator() => _order.GetEnumerator();
        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        /// <summary>Disposes the tensors the dict read or made.</summary>
        public void Dispose()
        {
            foreach (var t in _owned) t.Dispose();
            _owned.Clear();
            foreach (var e in _entries.Values) if (e.Owned) e.Value = null;
        }
    }
}
