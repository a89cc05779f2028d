package queue

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
)

// The queue file of a message, <id>.q, written once and then only
// appended to:
//
//	header   32 bytes: "ELQ1", the data's length (8 bytes) and the
//	         envelope's (4), the CRC-32C of the data, of the envelope, and
//	         of these 24 bytes; 4 bytes zero (all integers big-endian)
//	data     the message as received
//	envelope the Message in JSON, as committed
//	records  each a delivery state (state, in JSON) after the envelope:
//	         its length (4 bytes), its CRC-32C (4), the JSON
//
// The last valid record is the message's state; reading stops at the
// first record that is short or fails its check (a write the crash cut),
// and Open cuts the file there. The checksums make a file whose writes
// did not all reach the disk before a crash (the last ones, never
// acknowledged) fail to open rather than deliver something torn: the
// data's is checked by Open and again at the end of each reading of the
// data (Data), so a damaged message fails its delivery before the final
// dot rather than going out.
const (
	fileSuffix = ".q"
	fileMagic  = "ELQ1"
	headerSize = 32
	recordHead = 8
	// maxRecord bounds a record's length when reading, against damage.
	maxRecord = 16 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errDamaged means a queue file fails its checks: a crash cut its writes
// (it was never acknowledged) or the disk damaged it.
var errDamaged = errors.New("damaged queue file")

type fileHeader struct {
	dataLen         int64
	envLen          int64
	dataCRC, envCRC uint32
}

func (h fileHeader) marshal() []byte {
	b := make([]byte, headerSize)
	copy(b, fileMagic)
	binary.BigEndian.PutUint64(b[4:], uint64(h.dataLen))
	binary.BigEndian.PutUint32(b[12:], uint32(h.envLen))
	binary.BigEndian.PutUint32(b[16:], h.dataCRC)
	binary.BigEndian.PutUint32(b[20:], h.envCRC)
	binary.BigEndian.PutUint32(b[24:], crc32.Checksum(b[:24], crcTable))
	return b
}

func parseHeader(b []byte) (fileHeader, error) {
	if len(b) < headerSize || string(b[:4]) != fileMagic {
		return fileHeader{}, fmt.Errorf("%w: no header", errDamaged)
	}
	if crc32.Checksum(b[:24], crcTable) != binary.BigEndian.Uint32(b[24:]) {
		return fileHeader{}, fmt.Errorf("%w: bad header checksum", errDamaged)
	}
	h := fileHeader{
		dataLen: int64(binary.BigEndian.Uint64(b[4:])),
		envLen:  int64(binary.BigEndian.Uint32(b[12:])),
		dataCRC: binary.BigEndian.Uint32(b[16:]),
		envCRC:  binary.BigEndian.Uint32(b[20:]),
	}
	if h.dataLen < 0 {
		return fileHeader{}, fmt.Errorf("%w: bad data length", errDamaged)
	}
	return h, nil
}

// readHeader reads and checks the header at the start of f.
func readHeader(f file) (fileHeader, error) {
	hb := make([]byte, headerSize)
	if _, err := f.ReadAt(hb, 0); err != nil {
		if errors.Is(err, io.EOF) {
			return fileHeader{}, fmt.Errorf("%w: short header", errDamaged)
		}
		return fileHeader{}, err
	}
	return parseHeader(hb)
}

// envEnd is where the records start.
func (h fileHeader) envEnd() int64 { return headerSize + h.dataLen + h.envLen }

// state is what a record holds: what changes after Commit.
type state struct {
	Recipients    []Recipient `json:"recipients"`
	RequireTLS    bool        `json:"requiretls,omitempty"`
	TLSRequiredNo bool        `json:"tls_required_no,omitempty"`
}

func stateOf(m *Message) state {
	return state{Recipients: m.Recipients, RequireTLS: m.RequireTLS, TLSRequiredNo: m.TLSRequiredNo}
}

func (st state) apply(m *Message) {
	m.Recipients, m.RequireTLS, m.TLSRequiredNo = st.Recipients, st.RequireTLS, st.TLSRequiredNo
}

func marshalRecord(m *Message) ([]byte, error) {
	js, err := json.Marshal(stateOf(m))
	if err != nil {
		return nil, err
	}
	b := make([]byte, recordHead, recordHead+len(js))
	binary.BigEndian.PutUint32(b, uint32(len(js)))
	binary.BigEndian.PutUint32(b[4:], crc32.Checksum(js, crcTable))
	return append(b, js...), nil
}

// readFile reads the envelope and state of the queue file f: its
// header, envelope and records, and with verify the data's checksum. It
// returns the header and where the valid records end.
func readFile(f file, verify bool) (*Message, fileHeader, int64, error) {
	h, err := readHeader(f)
	if err != nil {
		return nil, h, 0, err
	}
	size, err := f.Size()
	if err != nil {
		return nil, h, 0, err
	}
	if h.envEnd() > size {
		return nil, h, 0, fmt.Errorf("%w: short file", errDamaged)
	}
	rest := make([]byte, size-headerSize-h.dataLen)
	if _, err := f.ReadAt(rest, headerSize+h.dataLen); err != nil && !errors.Is(err, io.EOF) {
		return nil, h, 0, err
	}
	env := rest[:h.envLen]
	if crc32.Checksum(env, crcTable) != h.envCRC {
		return nil, h, 0, fmt.Errorf("%w: bad envelope checksum", errDamaged)
	}
	m := &Message{}
	if err := json.Unmarshal(env, m); err != nil {
		return nil, h, 0, fmt.Errorf("%w: bad envelope: %w", errDamaged, err)
	}
	end := h.envEnd()
	recs := rest[h.envLen:]
	for len(recs) >= recordHead {
		n := int64(binary.BigEndian.Uint32(recs))
		if n > maxRecord || int64(len(recs)-recordHead) < n {
			break
		}
		js := recs[recordHead : recordHead+n]
		if crc32.Checksum(js, crcTable) != binary.BigEndian.Uint32(recs[4:]) {
			break
		}
		var st state
		if json.Unmarshal(js, &st) != nil {
			break
		}
		st.apply(m)
		end += recordHead + n
		recs = recs[recordHead+n:]
	}
	if verify {
		c := crc32.New(crcTable)
		if _, err := io.Copy(c, io.NewSectionReader(f, headerSize, h.dataLen)); err != nil {
			return nil, h, 0, err
		}
		if c.Sum32() != h.dataCRC {
			return nil, h, 0, fmt.Errorf("%w: bad data checksum", errDamaged)
		}
	}
	return m, h, end, nil
}

// checkedReader reads the data of a queue file and fails at its end
// (instead of io.EOF) when the data does not match its checksum.
type checkedReader struct {
	r    io.Reader
	crc  hash.Hash32
	want uint32
	id   string
}

func (c *checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.crc.Write(p[:n])
	if errors.Is(err, io.EOF) && c.crc.Sum32() != c.want {
		return n, fmt.Errorf("queue %s: %w: bad data checksum", c.id, errDamaged)
	}
	return n, err
}
