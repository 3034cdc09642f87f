#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Shared by the fuzz targets: the readers take a path, so each input is written to a file in a
/// private folder (in /dev/shm when there is one, so no disk is touched), overwritten per input.
public enum FuzzFile {
    /// The private folder, made once per process with mkdtemp.
    private static let directory: String = {
        var isShm = stat()
        let parent = stat("/dev/shm", &isShm) == 0 ? "/dev/shm" : "/tmp"
        var template = Array("\(parent)/cnx-fuzz-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else {
            perror("mkdtemp")
            abort()
        }
        return String(cString: made)
    }()

    /// Writes `size` bytes at `data` to `<private folder>/<name>` and returns its path.
    public static func write(_ data: UnsafePointer<UInt8>?, _ size: Int, name: String) -> String {
        let path = "\(directory)/\(name)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            perror(path)
            abort()
        }
        var done = 0
        while done < size, let data {
            let n = Glibc.write(fd, data + done, size - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                perror(path)
                abort()
            }
            done += n
        }
        close(fd)
        return path
    }
}

/// The whole target for a reader that takes a path: the input is written to
/// `<private folder>/<name>` (`FuzzFile.write`) and `read` is called on that path. An error of
/// type `expected` (the readers' contract for bad input: `CNXError`) is the reader refusing the
/// input; anything else escaping it is a bug, reported by stopping the fuzzer on that input.
public func fuzzReader<Expected: Error>(
    _ data: UnsafePointer<UInt8>?, _ size: Int, name: String, expected: Expected.Type,
    read: (String) throws -> Void
) -> CInt {
    let path = FuzzFile.write(data, size, name: name)
    do {
        try read(path)
    } catch is Expected {
        return 0
    } catch {
        fputs("fuzz: a reader threw something other than \(Expected.self): \(error)\n", stderr)
        abort()
    }
    return 0
}
