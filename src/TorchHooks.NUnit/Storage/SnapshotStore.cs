using System;
using System.IO;
using System.Linq;

namespace TorchHooks.NUnit
{
    /// <summary>
    /// Where snapshot files live and when they may be written.
    /// </summary>
    /// <remarks>
    /// <para>Default place: a <c>__snapshots__</c> folder next to the test's source file (from
    /// <c>[CallerFilePath]</c>), file <c>&lt;source file name&gt;.&lt;snapshot name&gt;.json</c>, e.g.
    /// <c>Tests/__snapshots__/MlpTests.mlp.json</c>. A relative <c>.In(folder)</c> is taken from the source file's folder.</para>
    /// <para>Deterministic CI builds map source paths (<c>/_/tests/MlpTests.cs</c>); such a path is found again by
    /// looking for its repository-relative part above the test assembly's folder.</para>
    /// <para>Writing: a missing snapshot is created (and the test passes) unless <c>CI</c> is <c>true</c>/<c>1</c>;
    /// <c>TORCHHOOKS_UPDATE_SNAPSHOTS=1</c> (or <c>.Update()</c>) rewrites existing ones. With <c>CI=true</c> nothing
    /// is ever written: a missing snapshot fails, and so does an update request.</para>
    /// </remarks>
    internal sealed class SnapshotStore
    {
        public const string UpdateVariable = "TORCHHOOKS_UPDATE_SNAPSHOTS";
        public const string CiVariable = "CI";
        public const string FolderName = "__snapshots__";

        private readonly Func<string, string?> _environment;

        public SnapshotStore(Func<string, string?>? environment = null)
        {
            _environment = environment ?? Environment.GetEnvironmentVariable;
        }

        public bool InCi => IsSet(CiVariable);

        public bool UpdateRequested => IsSet(UpdateVariable);

        private bool IsSet(string variable)
            => _environment(variable)?.Trim().ToLowerInvariant() is "true" or "1" or "yes";

        /// <summary>The snapshot file for <paramref name="name"/> asserted from <paramref name="sourceFile"/>.</summary>
        public static string FileFor(string name, string sourceFile, string? folder, string? searchFrom = null)
        {
            string source = ResolveSource(sourceFile, searchFrom ?? AppContext.BaseDirectory);
            string sourceDir = Path.GetDirectoryName(source) ?? ".";
            string dir = folder is null ? Path.Combine(sourceDir, FolderName) : Path.GetFullPath(folder, sourceDir);
            return Path.Combine(dir, $"{Path.GetFileNameWithoutExtension(source)}.{name}.json");
        }

        /// <summary>
        /// The source file as it is on this machine. A path mapped by a deterministic build (<c>/_/…</c>,
        /// <c>/_1/…</c>) is looked up above <paramref name="searchFrom"/> by its repository-relative part.
        /// </summary>
        internal static string ResolveSource(string sourceFile, string searchFrom)
        {
            if (string.IsNullOrEmpty(sourceFile))
                throw new ArgumentException("The test's source file is unknown ([CallerFilePath] was empty): pass the snapshot folder with .In(folder).", nameof(sourceFile));
            if (File.Exists(sourceFile) || Directory.Exists(Path.GetDirectoryName(sourceFile))) return sourceFile;
            string normalized = sourceFile.Replace('\\', '/');
            var parts = normalized.Split('/', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length > 1 && parts[0].StartsWith("_", StringComparison.Ordinal))
            {
                string relative = Path.Combine(parts.Skip(1).ToArray());
                for (var dir = new DirectoryInfo(searchFrom); dir != null; dir = dir.Parent)
                {
                    string candidate = Path.Combine(dir.FullName, relative);
                    if (File.Exists(candidate)) return candidate;
                }
            }
            throw new DirectoryNotFoundException(
                $"The test's source folder is not on this machine ({sourceFile}; a build with mapped source paths, and its " +
                $"repository-relative part was not found above {searchFrom}). Pass the snapshot folder with .In(folder).");
        }
    }
}
